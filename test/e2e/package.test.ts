/**
 * The package installs as a tool, as the README says: `npm pack`, then `npm install -g` of the tarball (into a
 * throw-away prefix) puts `assuan-proxy` on PATH; it runs, and the install is small (no Mermaid: the live view's
 * drawings are made ahead of time). Needs the npm registry for the dependencies' metadata, as a user's install does.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawClient } from '../support/assuanClient.js';
import { listening, runCli } from '../support/cli.js';
import { createAgentHome, makeTempDir, type AgentHome } from '../support/gnupg.js';

const run = promisify(execFile);
/** What the README promises (the install with Mermaid at run time took 169 MB). */
const MAX_INSTALLED_BYTES = 24 * 1024 * 1024;

let work: string;
let bin: string;
let installed: string;
let agent: AgentHome;

function sizeOf(dir: string): number {
  let total = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += fs.statSync(path.join(entry.parentPath, entry.name)).size;
  }
  return total;
}

beforeAll(async () => {
  work = makeTempDir('pack.');
  agent = await createAgentHome();
  const packed = await run('npm', ['pack', '--silent', '--pack-destination', work], { maxBuffer: 16 * 1024 * 1024 });
  const tarball = path.join(work, packed.stdout.trim().split('\n').at(-1)!);
  const prefix = path.join(work, 'prefix');
  await run('npm', ['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', tarball], { cwd: work, maxBuffer: 16 * 1024 * 1024 });
  bin = path.join(prefix, 'bin');
  installed = path.join(prefix, 'lib', 'node_modules');
}, 180_000);
afterAll(async () => {
  await agent?.cleanup();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

describe('the installed package', () => {
  it('puts assuan-proxy on PATH, and it prints the version', async () => {
    const { stdout } = await run('assuan-proxy', ['--version'], { env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } });
    const { version } = JSON.parse(fs.readFileSync('package.json', 'utf8')) as { version: string };
    expect(stdout).toBe(`assuan-proxy ${version}\n`);
  });

  it(`is small: under ${MAX_INSTALLED_BYTES / 1024 / 1024} MiB with its dependencies, and no Mermaid`, () => {
    const bytes = sizeOf(installed);
    expect(bytes).toBeLessThan(MAX_INSTALLED_BYTES);
    expect(fs.existsSync(path.join(installed, 'assuan-session-proxy', 'node_modules', 'mermaid'))).toBe(false);
    fs.mkdirSync('test-output', { recursive: true });
    fs.writeFileSync(path.join('test-output', 'installed-size.txt'), `${bytes}\n`);
  });

  it('relays a real gpg-agent session from the installed files', async () => {
    const dir = makeTempDir('apx.');
    const listen = path.join(dir, 'S.gpg-agent');
    const cli = runCli(['--listen', listen, '--upstream', agent.socket, '--warm-up', '0'], { PATH: `${bin}:${process.env.PATH}` }, { command: 'assuan-proxy' });
    try {
      await listening(cli);
      const client = await RawClient.connect(listen);
      expect(await client.readLine()).toMatch(/^OK Pleased/);
      expect(await client.request('GETINFO version')).toEqual([expect.stringMatching(/^D 2\.\d+\.\d+$/), 'OK']);
      client.destroy();
    } finally {
      cli.child.kill('SIGTERM');
      expect(await cli.exited).toBe(0);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
