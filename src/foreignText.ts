/**
 * Text another party chose (a program's name, a user ID) where a person reads it: a prompt, an audit record, a
 * summary. Controls, line separators and format characters (bidi overrides and isolates, zero-width marks) would
 * let it add lines, or rearrange or hide what is around it: each is shown as `?`.
 */
const UNSAFE = /[\x00-\x1f\x7f-\x9f\u2028\u2029]|\p{Cf}/gu;

export function oneLine(text: string): string {
  return text.replace(UNSAFE, '?');
}

/** oneLine, cut to `max` characters (code points: a character is never split). */
export function oneLineBounded(text: string, max: number): string {
  return [...oneLine(text)].slice(0, max).join('');
}
