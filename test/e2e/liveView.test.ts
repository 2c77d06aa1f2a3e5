/**
 * `--ui`: the live view in real headless Chromium (Debian's package, driven by playwright-core) at 1400×900, watching
 * real sessions through the proxy to a real gpg-agent: a gpg signing appears, changes state and disappears; several
 * sessions held in different states (idle, answering an INQUIRE, waiting on a pinentry) are counted on their boxes,
 * and the one selected has its path marked. The screenshot is written to test-output/live-view/, and to
 * docs/live-view.png with UPDATE_SCREENSHOT=1.
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawClient } from '../support/assuanClient.js';
import { runCli, stderrMatch, stopCli, type RunningCli } from '../support/cli.js';
import { createAgentHome, createClientHome, generateKey, makeTempDir, mustRun, type AgentHome, type KeyInfo } from '../support/gnupg.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
// These machines have no network: Chromium must not try to reach Google's services.
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic', '--no-first-run'];
const VIEWPORT = { width: 1400, height: 900 };
const OUTPUT_DIR = path.resolve('test-output', 'live-view');
const DOCS_SCREENSHOT = path.resolve('docs', 'live-view.png');
const PASSPHRASE = 'live view passphrase';
/** State names drawn smaller than this (in CSS pixels, as shown) are not readable at a glance. */
const MIN_STATE_NAME_PX = 11;

// A pinentry that answers everything at once but GETPIN, which waits for a line on the FIFO `release` beside it:
// a session asking for a passphrase then waits in the proxy for the agent, for as long as the test likes.
const WAITING_PINENTRY = `#!/bin/sh
echo "OK waiting pinentry"
while IFS= read -r line; do
  case "$line" in
    GETPIN*) read -r _ < "$(dirname "$0")/release"; echo "ERR 83886179 Operation cancelled <Pinentry>" ;;
    BYE*) echo "OK closing connection"; exit 0 ;;
    *) echo "OK" ;;
  esac
done
`;

let agent: AgentHome;
let key: KeyInfo;
let client: { home: string; socket: string; cleanup(): void };
let proxy: RunningCli;
let url: string;
let browser: Browser;
let page: Page;
let dataDir: string;
let releaseFifo: string;
const rawClients: RawClient[] = [];

beforeAll(async () => {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: install Debian's chromium package (apt-get install chromium), or set CHROMIUM_PATH`);
  dataDir = makeTempDir('live.');
  const pinentry = path.join(dataDir, 'pinentry.sh');
  fs.writeFileSync(pinentry, WAITING_PINENTRY, { mode: 0o700 });
  releaseFifo = path.join(dataDir, 'release');
  execFileSync('mkfifo', ['-m', '600', releaseFifo]);
  // The last pinentry-program line is the one the agent uses.
  agent = await createAgentHome({ agentConf: `pinentry-program ${pinentry}\n` });
  key = await generateKey(agent.home, 'Live <live@example.org>', 'ed25519', PASSPHRASE);
  client = await createClientHome(agent.home);
  proxy = runCli(['--listen', client.socket, '--upstream', agent.socket, '--ui', '0'], {});
  url = (await stderrMatch(proxy, /Live view: (\S+)/))[1]!;
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  page = await browser.newPage({ viewport: VIEWPORT });
  fs.mkdirSync(OUTPUT_DIR, { recursive: true });
});
afterAll(async () => {
  if (releaseFifo) releasePinentry();
  for (const c of rawClients) c.destroy();
  await browser?.close();
  if (proxy) expect(await stopCli(proxy)).toBe(0);
  client?.cleanup();
  await agent?.cleanup();
  if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
});

/** Lets a waiting pinentry's GETPIN go on (it answers Cancel). Opened read-write, the FIFO never blocks the test. */
function releasePinentry(): void {
  const fd = fs.openSync(releaseFifo, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
  try {
    fs.writeSync(fd, 'go\n');
  } finally {
    fs.closeSync(fd);
  }
}

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

/** The session ids the page lists. */
async function listedSessions(p: Page): Promise<string[]> {
  return p.locator('tr.session').evaluateAll((rows) => rows.map((r) => (r as HTMLElement).dataset.session!));
}

/** Connects a raw client through the proxy, reads the agent's greeting, and returns it with its session id. */
async function openSession(): Promise<{ raw: RawClient; id: string }> {
  const before = new Set(await listedSessions(page));
  const raw = await RawClient.connect(client.socket);
  rawClients.push(raw);
  expect(await raw.readLine()).toMatch(/^OK /);
  await page.waitForFunction((known) => [...document.querySelectorAll<HTMLElement>('tr.session')].some((r) => !known.includes(r.dataset.session!)), [...before]);
  const id = (await listedSessions(page)).find((s) => !before.has(s))!;
  await page.waitForSelector(`tr.session[data-session="${id}"][data-state="awaitingCommand.ready"]`);
  return { raw, id };
}

/** The count badges on the session drawing: box id → count (each badge's number is also its text). */
async function countBadges(p: Page): Promise<Record<string, number>> {
  const badges = await p.locator('.diagram[data-machine="session"] .overlay g.live-count').evaluateAll((nodes) =>
    nodes.map((n) => ({ box: (n as SVGGElement).dataset.box!, count: (n as SVGGElement).dataset.count!, text: n.querySelector('text')?.textContent })),
  );
  for (const b of badges) expect(b.text).toBe(b.count);
  return Object.fromEntries(badges.map((b) => [b.box, Number(b.count)]));
}

/** The selected session's path as the drawing marks it: box id → step number, from the badges and the outlined boxes. */
async function markedPath(p: Page): Promise<{ steps: Record<string, number>; outlined: Record<string, number>; current: string[] }> {
  const marks = await p.evaluate(() => {
    const svg = document.querySelector('.diagram[data-machine="session"] svg')!;
    const boxId = (g: Element) => /-state-(.+)-\d+$/.exec(g.id)![1]!;
    return {
      badges: [...svg.querySelectorAll<SVGGElement>('.overlay g.path-step')].map((g) => ({ box: g.dataset.box!, step: g.dataset.step!, text: g.querySelector('text')?.textContent })),
      outlined: [...svg.querySelectorAll<SVGGElement>('g.visited')].map((g) => [boxId(g), Number(g.dataset.step)] as const),
      current: [...svg.querySelectorAll('g.current')].map(boxId),
    };
  });
  for (const b of marks.badges) expect(b.text).toBe(b.step);
  return { steps: Object.fromEntries(marks.badges.map((b) => [b.box, Number(b.step)])), outlined: Object.fromEntries(marks.outlined), current: marks.current };
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
    expect(await countBadges(page)).toEqual({});
    expect(await page.textContent('#status')).toBe('server: listening');
    // The drawing at its own size, for reading the events on its arrows.
    const fullSize = await page.getAttribute('.diagram[data-machine="session"] a.full-size', 'href');
    expect(await page.evaluate(async (href) => (await fetch(href!)).headers.get('content-type'), fullSize)).toBe('image/svg+xml');
    expect(failed).toEqual([]);
  });

  it('shows a real gpg signing session appear, change state and disappear; selected, its path is marked until it ends', async () => {
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
    await page.waitForFunction(() => document.querySelector('tr.session td:nth-child(4)')?.textContent !== '–');
    const cells = await page.locator('tr.session td').allTextContents();
    expect(cells[0]).toBe(sessionId);
    expect(cells[1]).toBe('awaitingCommand.ready');
    // The last event: the agent's answer that ended gpg's last command.
    expect(cells[2]).toMatch(/^AGENT\.(OK|ERR)$/);
    expect(cells[3]).toMatch(/^[A-Z_]+$/);
    expect(cells[5]).toMatch(/^\d+(\.\d)? (B|KiB)$/);
    const liveSessionStates = await page.locator('.diagram[data-machine="session"] g.live').evaluateAll((nodes) => nodes.map((n) => n.id));
    // The page draws the lifecycle view: `ready`, and the awaitingCommand cluster around it, are lit and counted.
    expect(liveSessionStates).toEqual([expect.stringMatching(/-state-awaitingCommand-\d+$/), expect.stringMatching(/-state-awaitingCommand__ready-\d+$/)]);
    expect(await countBadges(page)).toEqual({ awaitingCommand: 1, awaitingCommand__ready: 1 });
    expect(await page.textContent('#session-count')).toBe('1');

    // Selected: its path is marked (connecting first, then ready, then the commands gpg sent) and listed.
    await page.click(`tr.session[data-session="${sessionId}"]`);
    await page.waitForSelector(`body[data-selected="${sessionId}"]`);
    const { steps, outlined, current } = await markedPath(page);
    // Numbered in the order first entered. Between ready and waitingForAgent there may be bufferingCommand: libassuan
    // writes a line and its LF in two writes, which a loaded machine can deliver apart.
    expect(steps, JSON.stringify(steps)).toMatchObject({ connecting: 1, awaitingCommand__ready: 2 });
    expect(steps.command__waitingForAgent, JSON.stringify(steps)).toBeGreaterThan(2);
    expect(Object.values(steps).sort((a, b) => a - b)).toEqual(Object.values(steps).map((_, i) => i + 1));
    expect(outlined).toEqual(steps);
    expect(current).toEqual(['awaitingCommand__ready']);
    expect(await page.locator('#selected-path li').first().getAttribute('data-state')).toMatch(/^connecting\./);
    expect(await page.locator('#selected-transitions li').count()).toBeGreaterThan(0);

    gpg.stdin.end(fs.readFileSync(path.join(dataDir, 'msg')));
    expect(await gpgExit).toBe(0);
    expect(gpgErr).toBe('');
    await page.waitForFunction(() => document.querySelectorAll('tr.session').length === 0);
    // A session that ends clears its selection and its marks.
    expect(await page.getAttribute('body', 'data-selected')).toBe('');
    expect(await page.textContent('#selection-hint')).toContain(`Session ${sessionId} ended`);
    expect(await page.locator('.diagram g.visited, .overlay g.path-step').count()).toBe(0);
    expect(await page.textContent('#session-count')).toBe('0');
    expect(await page.locator('.diagram[data-machine="session"] g.live').count()).toBe(0);
    expect(await countBadges(page)).toEqual({});

    const seen = (await page.evaluate(() => (window as unknown as { seenStates: string[] }).seenStates)).filter((e) => e.startsWith(`${sessionId} `)).map((e) => e.split(' ')[1]);
    expect(seen[0]).toMatch(/^(connecting|awaitingCommand|command)\./);
    // After the data arrived: PKSIGN went out and its answer came back, through the states that carry it.
    const afterIdle = seen.slice(seen.indexOf('awaitingCommand.ready'));
    expect(afterIdle).toEqual(expect.arrayContaining(['awaitingCommand.ready', 'command.waitingForAgent']));
    await mustRun('gpg', agent.home, ['--batch', '--verify', path.join(dataDir, 'msg.sig'), path.join(dataDir, 'msg')]);
  });

  it('at 1400×900: the whole session machine on screen and readable, each live box counted, the selected session path marked (screenshot)', async () => {
    // Two clients idle in ready; one in an INQUIRE it does not answer; one waiting for the agent, whose pinentry
    // waits.
    const idle1 = await openSession();
    const idle2 = await openSession();
    const inquire = await openSession();
    expect((await inquire.raw.request(`SETKEY ${key.keygrip}`)).at(-1)).toBe('OK');
    expect((await inquire.raw.request('PKDECRYPT')).at(-1)).toMatch(/^INQUIRE CIPHERTEXT/);
    await page.waitForSelector(`tr.session[data-session="${inquire.id}"][data-state^="command.bufferingInquire"]`);
    const asking = await openSession();
    asking.raw.write('GET_PASSPHRASE --data live-view-test X Passphrase Live+view+test\n');
    await page.waitForSelector(`tr.session[data-session="${asking.id}"][data-state="command.waitingForAgent"]`);

    // A page opened now: once it says it is ready, the drawings, the sessions and their counts are all on screen.
    const context = await browser.newContext({ viewport: VIEWPORT });
    const view = await context.newPage();
    await view.goto(url);
    await view.waitForSelector('body[data-ready="true"]');
    const expectedCounts = { awaitingCommand: 2, awaitingCommand__ready: 2, command: 2, command__bufferingInquire: 1, command__waitingForAgent: 1 };
    expect(await listedSessions(view)).toEqual([idle1.id, idle2.id, inquire.id, asking.id]);
    expect(await countBadges(view)).toEqual(expectedCounts);
    expect(await view.textContent('[data-live-count="session"]')).toBe('4 live');

    // The whole drawing within the window, nothing to scroll, every box on screen, the state names readable.
    const fit = await view.evaluate(() => {
      const svg = document.querySelector<SVGSVGElement>('.diagram[data-machine="session"] svg')!;
      const rect = (e: Element) => {
        const r = e.getBoundingClientRect();
        return { left: r.left, top: r.top, right: r.right, bottom: r.bottom };
      };
      const label = svg.querySelector('#' + CSS.escape([...svg.querySelectorAll('g[id]')].find((g) => /-state-awaitingCommand__ready-\d+$/.test(g.id))!.id) + ' .nodeLabel p')!;
      return {
        window: { width: innerWidth, height: innerHeight },
        scroll: { width: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight },
        svg: rect(svg),
        drawing: rect(svg.querySelector('g.root')!),
        boxes: [...svg.querySelectorAll('g[id*="-state-"]')].map(rect),
        badges: [...svg.querySelectorAll('.overlay g')].map(rect),
        stateNamePx: parseFloat(getComputedStyle(label).fontSize) * svg.getScreenCTM()!.a,
      };
    });
    expect(fit.window).toEqual(VIEWPORT);
    expect(fit.scroll).toEqual(VIEWPORT);
    expect(fit.boxes.length).toBeGreaterThan(15);
    for (const r of [fit.svg, fit.drawing, ...fit.boxes, ...fit.badges]) {
      expect(r.left).toBeGreaterThanOrEqual(0);
      expect(r.top).toBeGreaterThanOrEqual(0);
      expect(r.right).toBeLessThanOrEqual(VIEWPORT.width);
      expect(r.bottom).toBeLessThanOrEqual(VIEWPORT.height);
    }
    expect(fit.stateNamePx).toBeGreaterThanOrEqual(MIN_STATE_NAME_PX);

    // Selecting the session in the INQUIRE marks its path: the boxes it has been in, numbered in order, the one
    // it is in now outlined heavier, and its transitions listed.
    await view.click(`tr.session[data-session="${inquire.id}"]`);
    await view.waitForSelector(`body[data-selected="${inquire.id}"]`);
    const marked = await markedPath(view);
    const order = Object.entries(marked.steps).sort((a, b) => a[1] - b[1]).map(([box]) => box);
    expect(order.slice(0, 3)).toEqual(['connecting', 'awaitingCommand__ready', 'command__waitingForAgent']);
    expect(order.at(-1)).toBe('command__bufferingInquire');
    expect(Object.values(marked.steps).sort((a, b) => a - b)).toEqual(order.map((_, i) => i + 1));
    expect(marked.outlined).toEqual(marked.steps);
    expect(marked.current).toEqual(['command__bufferingInquire']);
    expect(await view.getAttribute(`tr.session[data-session="${inquire.id}"]`, 'aria-selected')).toBe('true');
    expect(await view.textContent('#selected-state')).toMatch(/^command\.bufferingInquire\./);
    const pathItems = await view.locator('#selected-path li').evaluateAll((lis) => lis.map((li) => ({ state: (li as HTMLElement).dataset.state!, step: (li as HTMLLIElement).value })));
    expect(pathItems[0]).toEqual({ state: expect.stringMatching(/^connecting\./), step: 1 });
    expect(pathItems.at(-1)).toEqual({ state: expect.stringMatching(/^command\.bufferingInquire\./), step: order.length });
    expect(await view.locator('#selected-transitions li').last().textContent()).toMatch(/→ command\.bufferingInquire\.\S+ \(AGENT\.INQUIRE\)$/);

    // The selection survives another session's transitions.
    const before = Number(await view.getAttribute(`tr.session[data-session="${idle1.id}"]`, 'data-transitions'));
    expect((await idle1.raw.request('NOP')).at(-1)).toBe('OK');
    await view.waitForFunction(
      ({ id, n }) => {
        const row = document.querySelector<HTMLElement>(`tr.session[data-session="${id}"]`);
        return Number(row?.dataset.transitions) >= n + 2 && row?.dataset.state === 'awaitingCommand.ready';
      },
      { id: idle1.id, n: before },
    );
    expect(await view.getAttribute('body', 'data-selected')).toBe(inquire.id);
    expect((await markedPath(view)).steps).toEqual(marked.steps);
    expect(await countBadges(view)).toEqual(expectedCounts);

    // Escape deselects; the keyboard selects again (Tab to the row, Enter).
    await view.keyboard.press('Escape');
    await view.waitForSelector('body[data-selected=""]');
    expect(await view.locator('.diagram g.visited, .overlay g.path-step').count()).toBe(0);
    expect(await view.locator('tr.session.selected').count()).toBe(0);
    await view.focus(`tr.session[data-session="${inquire.id}"]`);
    await view.keyboard.press('Enter');
    await view.waitForSelector(`body[data-selected="${inquire.id}"]`);
    expect((await markedPath(view)).steps).toEqual(marked.steps);

    // Only state names, verbs, byte counts and event types: no key material, no passphrase.
    const text = await view.evaluate(() => document.body.innerText);
    expect(text).not.toContain(key.keygrip);
    expect(text).not.toContain(PASSPHRASE);

    await view.evaluate(() => (document.activeElement as HTMLElement | null)?.blur());
    await view.mouse.move(0, 0);
    const shot = path.join(OUTPUT_DIR, 'live-view.png');
    await view.screenshot({ path: shot });
    expect(fs.readFileSync(shot).subarray(1, 4).toString()).toBe('PNG');
    if (process.env.UPDATE_SCREENSHOT === '1') fs.copyFileSync(shot, DOCS_SCREENSHOT);

    // The selected session ends (its client hangs up in the middle of the INQUIRE): the selection goes with it.
    inquire.raw.destroy();
    await view.waitForSelector('body[data-selected=""]');
    expect(await view.textContent('#selection-hint')).toContain(`Session ${inquire.id} ended`);
    expect(await view.locator('.diagram g.visited, .overlay g.path-step').count()).toBe(0);
    await view.waitForFunction(() => document.querySelectorAll('tr.session').length === 3);
    expect(await countBadges(view)).toEqual({ awaitingCommand: 2, awaitingCommand__ready: 2, command: 1, command__waitingForAgent: 1 });

    // The pinentry lets go: the agent answers Cancel and the session is back in ready.
    releasePinentry();
    expect((await asking.raw.response()).at(-1)).toMatch(/^ERR \d+ /);
    await view.waitForSelector(`tr.session[data-session="${asking.id}"][data-state="awaitingCommand.ready"]`);
    expect(await countBadges(view)).toEqual({ awaitingCommand: 3, awaitingCommand__ready: 3 });
    for (const c of [idle1, idle2, asking]) c.raw.destroy();
    await view.waitForFunction(() => document.querySelectorAll('tr.session').length === 0);
    expect(await countBadges(view)).toEqual({});
    await context.close();
  });
});
