/** Reading what GnuPG writes the way GnuPG does: option files, key listings, KEYINFO lines. */

/**
 * Whether an option file (gpg.conf, gpgsm.conf) sets `option`. As gpg reads it: one option per line, leading
 * whitespace ignored, a line starting with `#` is a comment, the option name ends at the first whitespace.
 */
export function setsOption(conf: string, option: string): boolean {
  return conf.split(/\r?\n/).some((line) => {
    const text = line.trimStart();
    if (text === '' || text.startsWith('#')) return false;
    return text.split(/\s/, 1)[0] === option;
  });
}

/** The keygrips of `grp:` records in gpg's `--with-colons --with-keygrip` listing (primary keys and subkeys). */
export function keygripsOfListing(listing: string): Set<string> {
  const grips = new Set<string>();
  for (const line of listing.split('\n')) {
    if (!line.startsWith('grp:')) continue;
    const grip = line.split(':')[9];
    if (grip && /^[0-9A-F]{40}$/i.test(grip)) grips.add(grip.toUpperCase());
  }
  return grips;
}

/** The keygrips in gpg-agent's `KEYINFO --list` status lines (`KEYINFO <grip> <type> ...`). */
export function keygripsOfKeyinfo(status: readonly string[]): string[] {
  const grips: string[] = [];
  for (const line of status) {
    const [keyword, grip] = line.split(' ');
    if (keyword === 'KEYINFO' && grip && /^[0-9A-F]{40}$/i.test(grip)) grips.push(grip.toUpperCase());
  }
  return grips;
}
