/**
 * `--ui`: the live view in real headless Chromium (Debian's package, driven by playwright-core), watching a real
 * gpg signing go through the proxy: the session appears, changes state, and disappears.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, stderrMatch, stopCli, type RunningCli } from '../support/cli.js';
import { createAgentHome, createClientHome, generateKey, makeTempDir, mustRun, type AgentHome, type KeyInfo } from '../support/gnupg.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
// These machines have no network: Chromium must not try to reach Google's services.
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic', '--no-first-run'];
const OUTPUT_DIR = path.resolve('test-output', 'live-view');
const PASSPHRASE = 'live view passphrase';

let agent: AgentHome;
let key: KeyInfo;
let client: { home: string; socket: string; cleanup(): void };
let proxy: RunningCli;
let url: string;
let browser: Browser;
let page: Page;
let dataDir: string;

beforeAll(async () => {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: install Debian's chromium package (apt-get install chromium), or set CHROMIUM_PATH`);
  agent = await createAgentHome();
  key = await generateKey(agent.home, 'Live <live@example.org>', 'ed25519', PASSPHRASE);
  client = await createClientHome(agent.home);
  dataDir = makeTempDir('live.');
  proxy = runCli(['--listen', client.socket, '--upstream', agent.socket, '--ui', '0'], {});
  url = (await stderrMatch(proxy, /Live view: (\S+)/))[1]!;
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  page = await browser.newPage({ viewport: { width: 1500, height: 1100 } });
  fs.mkdirSync(OUTPUT_DIR, { recursive: true });
});
afterAll(async () => {
  await browser?.close();
  if (proxy) expect(await stopCli(proxy)).toBe(0);
  client?.cleanup();
  await agent?.cleanup();
  if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
});

/** The states the page has shown for each session row, in order, recorded by a MutationObserver. */
async function recordRowStates(): Promise<void> {
  await page.evaluate(() => {
    const seen: string[] = [];
    (window as unknown as { seenStates: string[] }).seenStates = seen;
    const record = () => {
      for (const row of document.querySelectorAll<HTMLElement>('tr.session')) {
        const entry = `${row.dataset.session} ${row.dataset.state}`;
        if (seen.at(-1) !== entry) seen.push(entry);
      }
    };
    new MutationObserver(record).observe(document.getElementById('session-rows')!, { subtree: true, childList: true, attributes: true });
  });
}

describe('--ui live view', () => {
  it('loads offline from the printed URL (its token buys a cookie): both machine diagrams drawn, the server shown listening, no session yet', async () => {
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/\?token=[A-Za-z0-9_-]{43}$/);
    const bare = url.replace(/\?.*$/, '');
    // Another local user, without the token.
    expect((await fetch(bare)).status).toBe(401);
    expect((await fetch(`${bare}events`)).status).toBe(401);
    const failed: string[] = [];
    page.on('requestfailed', (req) => failed.push(req.url()));
    await page.goto(url);
    // Redirected to the URL without the token; the page, its assets and its event stream go by the cookie.
    expect(page.url()).toBe(bare);
    await page.waitForSelector('body[data-ready="true"]');
    expect(await page.locator('.diagram[data-machine="session"] svg').count()).toBe(1);
    expect(await page.locator('.diagram[data-machine="server"] svg').count()).toBe(1);
    const liveServerStates = await page.locator('.diagram[data-machine="server"] g.live').evaluateAll((nodes) => nodes.map((n) => n.id));
    expect(liveServerStates).toEqual([expect.stringMatching(/-state-listening-\d+$/)]);
    expect(await page.locator('tr.session').count()).toBe(0);
    expect(await page.textContent('#status')).toBe('server: listening');
    expect(failed).toEqual([]);
  });

  it('shows a real gpg signing session appear, change state and disappear', async () => {
    await recordRowStates();
    fs.writeFileSync(path.join(dataDir, 'msg'), 'watched message\n');
    // gpg opens its agent session, checks the key, then reads the data to sign from stdin: holding stdin open
    // holds the session idle in `ready`, where the page can be looked at.
    const gpg = spawn('gpg', ['--batch', '--pinentry-mode', 'loopback', '--passphrase', PASSPHRASE, '-u', key.fingerprint, '--detach-sign', '-o', path.join(dataDir, 'msg.sig')], {
      env: { ...process.env, GNUPGHOME: client.home },
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    let gpgErr = '';
    gpg.stderr.on('data', (c: Buffer) => (gpgErr += c.toString()));
    const gpgExit = new Promise<number | null>((resolve) => gpg.on('exit', resolve));

    await page.waitForSelector('tr.session[data-state="awaitingCommand.ready"]');
    const sessionId = await page.getAttribute('tr.session', 'data-session');
    // Statistics arrive each second: the verb of the last command and the bytes each way.
    await page.waitForFunction(() => document.querySelector('tr.session td:nth-child(3)')?.textContent !== '–');
    const cells = await page.locator('tr.session td').allTextContents();
    expect(cells[0]).toBe(sessionId);
    expect(cells[1]).toBe('awaitingCommand.ready');
    expect(cells[2]).toMatch(/^[A-Z_]+$/);
    expect(cells[4]).toMatch(/^\d+(\.\d)? (B|KiB)$/);
    expect(await page.locator('tr.transitions ol.recent li').count()).toBeGreaterThan(0);
    const liveSessionStates = await page.locator('.diagram[data-machine="session"] g.live').evaluateAll((nodes) => nodes.map((n) => n.id));
    // The page draws the lifecycle view: `ready`, and the awaitingCommand cluster around it, are lit.
    expect(liveSessionStates).toEqual([expect.stringMatching(/-state-awaitingCommand-\d+$/), expect.stringMatching(/-state-awaitingCommand__ready-\d+$/)]);
    expect(await page.textContent('#session-count')).toBe('1');
    await page.locator('.diagram[data-machine="session"] g.live').last().scrollIntoViewIfNeeded();
    await page.screenshot({ path: path.join(OUTPUT_DIR, 'live-view.png'), fullPage: true });

    gpg.stdin.end(fs.readFileSync(path.join(dataDir, 'msg')));
    expect(await gpgExit).toBe(0);
    expect(gpgErr).toBe('');
    await page.waitForFunction(() => document.querySelectorAll('tr.session').length === 0);
    expect(await page.textContent('#session-count')).toBe('0');
    expect(await page.locator('.diagram[data-machine="session"] g.live').count()).toBe(0);

    const seen = (await page.evaluate(() => (window as unknown as { seenStates: string[] }).seenStates)).filter((e) => e.startsWith(`${sessionId} `)).map((e) => e.split(' ')[1]);
    expect(seen[0]).toMatch(/^(connecting|awaitingCommand|command)\./);
    // After the data arrived: PKSIGN went out and its answer came back, through the states that carry it.
    const afterIdle = seen.slice(seen.indexOf('awaitingCommand.ready'));
    expect(afterIdle).toEqual(expect.arrayContaining(['awaitingCommand.ready', 'command.waitingForAgent']));
    expect(fs.statSync(path.join(OUTPUT_DIR, 'live-view.png')).size).toBeGreaterThan(10_000);
    await mustRun('gpg', agent.home, ['--batch', '--verify', path.join(dataDir, 'msg.sig'), path.join(dataDir, 'msg')]);
  });
});
