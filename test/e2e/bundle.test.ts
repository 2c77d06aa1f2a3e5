/**
 * The single-file build (`npm run bundle`) runs with only `node`: copied alone into an empty directory, far from
 * any node_modules, it relays a real gpg-agent session, serves the live view with its drawings, and logs.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bundle } from '../../scripts/bundle.js';
import { RawClient } from '../support/assuanClient.js';
import { fetchText, viewerSession } from '../support/liveViewClient.js';
import { createAgentHome, makeTempDir, type AgentHome } from '../support/gnupg.js';

let agent: AgentHome;
let dir: string;
let bundled: string;

beforeAll(async () => {
  agent = await createAgentHome();
  dir = makeTempDir('bundle.');
  // Built elsewhere, then copied alone: nothing beside it, and no node_modules in any directory above it.
  const built = await bundle(path.join(makeTempDir('bundle-out.'), 'assuan-proxy.mjs'));
  bundled = path.join(dir, 'assuan-proxy.mjs');
  fs.copyFileSync(built.outfile, bundled);
  fs.rmSync(path.dirname(built.outfile), { recursive: true, force: true });
  for (let up = dir; up !== path.dirname(up); up = path.dirname(up)) expect(fs.existsSync(path.join(up, 'node_modules'))).toBe(false);
});
afterAll(async () => {
  await agent?.cleanup();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

function runBundle(args: string[]) {
  const child = spawn(process.execPath, [bundled, ...args], { cwd: dir, env: { PATH: process.env.PATH }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  const waitFor = async (which: 'stdout' | 'stderr', pattern: RegExp): Promise<RegExpExecArray> => {
    for (;;) {
      const match = pattern.exec(which === 'stdout' ? stdout : stderr);
      if (match) return match;
      const gone = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => child[which].once('data', () => r(false)))]);
      if (gone) throw new Error(`the bundle exited: ${stderr}`);
    }
  };
  return { child, exited, stdout: () => stdout, waitFor };
}

describe('the single-file build', () => {
  it('prints its version', async () => {
    const run = runBundle(['--version']);
    expect(await run.exited).toBe(0);
    const { version } = JSON.parse(fs.readFileSync('package.json', 'utf8')) as { version: string };
    expect(run.stdout()).toBe(`assuan-proxy ${version}\n`);
  });

  it('relays a real gpg-agent session, serves the live view and its drawings, logs the session, and stops on SIGTERM', async () => {
    const listen = path.join(dir, 'sock', 'S.gpg-agent');
    const run = runBundle(['--listen', listen, '--upstream', agent.socket, '--warm-up', '10', '--ui', '0', '--log-format', 'json']);
    await run.waitFor('stdout', /"msg":"listening"/);
    const client = await RawClient.connect(listen);
    expect(await client.readLine()).toMatch(/^OK Pleased/);
    expect(await client.request('GETINFO version')).toEqual([expect.stringMatching(/^D 2\.\d+\.\d+$/), 'OK']);
    client.write('BYE\n');
    expect(await client.rest()).toEqual(['OK closing connection']);
    await run.waitFor('stdout', /"msg":"session ended"/);

    const pageUrl = (await run.waitFor('stderr', /Live view: (\S+)/))[1]!;
    const { origin: base, cookie, status } = await viewerSession(pageUrl);
    expect(status).toBe(302);
    const page = await fetchText(`${base}/`, { cookie });
    expect(page.status).toBe(200);
    expect(page.body).toContain('live-view.js');
    for (const machine of ['session', 'server']) {
      const drawing = await fetchText(`${base}/diagrams/${machine}.svg`, { cookie });
      expect(drawing.status).toBe(200);
      expect(drawing.body).toContain(`<svg id="diagram-${machine}"`);
    }
    run.child.kill('SIGTERM');
    expect(await run.exited).toBe(0);
    expect(fs.existsSync(listen)).toBe(false);
  });
});
