/**
 * The user ID a consent prompt names a key by: looked up by keygrip in the public keyring the proxy sees (its
 * GNUPGHOME), with `gpg --with-colons --with-keygrip --list-keys`. The listing is kept for a minute, so a burst of
 * prompts runs gpg once, and read anew when a keygrip is not in it (a key imported since).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);
const FRESH_MS = 60_000;
/** A keygrip not in the listing lists again (a key imported since), but not more often than this: a client naming
 * random keygrips must not keep gpg running. */
const MISS_RELIST_MS = 10_000;
/** gpg is local and quick; a keyring it cannot read in time leaves the prompt without a user ID, not waiting. */
const LIST_TIMEOUT_MS = 5_000;

export class KeyNames {
  private names: Map<string, string> | undefined;
  private listedAt = 0;
  private listing: Promise<Map<string, string>> | undefined;

  constructor(
    private readonly env: NodeJS.ProcessEnv,
    private readonly now: () => number = Date.now,
  ) {}

  /** The first user ID of the key (primary or subkey) with this keygrip, or undefined. */
  async userIdOf(keygrip: string | undefined): Promise<string | undefined> {
    if (keygrip === undefined) return undefined;
    const grip = keygrip.toUpperCase();
    const age = this.now() - this.listedAt;
    if (this.names !== undefined && age <= FRESH_MS && this.names.has(grip)) return this.names.get(grip);
    if (this.names !== undefined && age <= MISS_RELIST_MS) return undefined;
    // Not known (or old): list once more, shared by every prompt asking meanwhile.
    this.listing ??= this.list().finally(() => (this.listing = undefined));
    this.names = await this.listing;
    this.listedAt = this.now();
    return this.names.get(grip);
  }

  private async list(): Promise<Map<string, string>> {
    const names = new Map<string, string>();
    let stdout: string;
    try {
      ({ stdout } = await run('gpg', ['--batch', '--no-autostart', '--with-colons', '--with-keygrip', '--fixed-list-mode', '--list-keys'], {
        env: this.env,
        // Bytes as they are (one char each): a user ID is UTF-8 with its `:` and `\` as `\xHH`, decoded as a whole
        // in unescapeColons. Read as UTF-8 here, its non-ASCII characters came out as U+FFFD there.
        encoding: 'latin1',
        timeout: LIST_TIMEOUT_MS,
        maxBuffer: 16 * 1024 * 1024,
      }));
    } catch {
      return this.names ?? names;
    }
    let grips: string[] = [];
    let userId: string | undefined;
    const flush = () => {
      // The first key listed with a keygrip names it: a public key imported later that reuses the same key
      // material (an encryption subkey needs no back-signature) must not rename it.
      if (userId !== undefined) for (const grip of grips) if (!names.has(grip)) names.set(grip, userId);
    };
    for (const record of stdout.split('\n').map((line) => line.split(':'))) {
      if (record[0] === 'pub') {
        flush();
        grips = [];
        userId = undefined;
      } else if (record[0] === 'grp') grips.push((record[9] ?? '').toUpperCase());
      else if (record[0] === 'uid' && userId === undefined) userId = unescapeColons(record[9] ?? '');
    }
    flush();
    return names;
  }
}

/** gpg's colon listings escape `:` and control bytes as `\xHH`. */
function unescapeColons(text: string): string {
  return Buffer.from(text.replace(/\\x([0-9a-fA-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16))), 'latin1').toString('utf8');
}
