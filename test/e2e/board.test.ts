/**
 * The web board in a real browser (Debian's Chromium through playwright-core), on a real board with
 * a real supervisor and real workers (test/fixtures/web/ticker.mjs): cards move ready → running →
 * done without a reload, a running task's drawer shows its log growing, a task is cancelled from
 * the page with the token (from the URL `status` prints), tasks are added (the payload checked
 * before it is sent), blocked with a reason, unblocked and retried; no request leaves the loopback
 * server. Screenshots go to test-results/e2e/.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BrowserContext, Locator, Page } from 'playwright-core';
import { Cleanups, FIXTURES, ROOT, cleanEnv, cli, exited, logEvents, show, waitFor } from '../src/common.js';
import { CHROMIUM, chromiumPresent, launchChromium, openAndMeasure, type WebBrowser } from '../src/web-board.js';

const SHOTS = join(ROOT, 'test-results', 'e2e');
const cleanups = new Cleanups();

let db = '';
let go = '';
let origin = '';
let pageUrl = '';
let token = '';
let browser: WebBrowser;
let context: BrowserContext;
let page: Page;
let sup: ReturnType<Cleanups['startCli']>;
const requests: string[] = [];
const pageErrors: string[] = [];
/** The Last-Event-ID of each resumed event stream. */
const resumedWith: string[] = [];
let navigations = 0;

async function add(title: string, payload?: unknown): Promise<string> {
  const r = await cli(db, ['add', '--skill', 'ticker', '--title', title, ...(payload !== undefined ? ['--payload', JSON.stringify(payload)] : [])]);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim();
}

const status = async (id: string): Promise<string> => (await show(db, id)).status;
const release = (id: string) => writeFileSync(join(go, id), '');
/** A task's card in a column. */
const card = (col: string, id: string): Locator => page.locator(`section.column[data-status="${col}"] [data-task-id="${id}"]`);
const drawer = () => page.locator('dialog#drawer[open]');
const shot = (name: string) => page.screenshot({ path: join(SHOTS, `${name}.png`) });
const lastTick = (text: string | null) => Math.max(0, ...[...(text ?? '').matchAll(/tick (\d+) of/g)].map((m) => Number(m[1])));

async function openCard(col: string, id: string): Promise<Locator> {
  await card(col, id).locator('button.card').click();
  const d = drawer();
  await d.waitFor();
  await expect.poll(() => d.getAttribute('data-task-id')).toBe(id);
  return d;
}

async function closeDrawer(): Promise<void> {
  await page.keyboard.press('Escape');
  await expect.poll(() => drawer().count()).toBe(0);
}

beforeAll(async () => {
  if (!chromiumPresent()) throw new Error(`no Chromium at ${CHROMIUM}: apt-get install -y chromium (or set KANBAN_CHROMIUM to a Chromium binary)`);
  mkdirSync(SHOTS, { recursive: true });
  const b = cleanups.boardDir('ks-e2e-');
  db = b.db;
  go = join(b.dir, 'go');
  mkdirSync(go);
  const skill = await cli(db, ['skill', 'add', 'ticker', '--env', `GO_DIR=${go}`, '--', process.execPath, join(FIXTURES, 'web', 'ticker.mjs')]);
  expect(skill.code, skill.stderr).toBe(0);
  // Two workers at most: a third task waits in ready, where the page can see it.
  sup = cleanups.startCli(db, ['run', '--max-concurrent-workers', '2'], cleanEnv({ KANBAN_HTTP: '127.0.0.1:0', LOG_FORMAT: 'json' }));
  const started = await waitFor(() => logEvents(sup.output(), 'http_started')[0], 30_000);
  origin = new URL(String(started.url)).origin;
  // The page's URL as `status` prints it: the token in the fragment.
  const st = await waitFor(async () => /page: (http:\/\/\S+)#token=(\S+)/.exec((await cli(db, ['status'])).stdout), 15_000);
  pageUrl = `${st[1]}#token=${st[2]}`;
  token = st[2]!;
  expect(st[1]).toBe(`${origin}/`);
  browser = await launchChromium();
  context = browser.context;
  // Every request of every page of the browser, from the first navigation on (page.on('request') for each of its pages).
  // Uncaught errors of the page, and anything the Content-Security-Policy refused.
  context.on('weberror', (e) => void pageErrors.push(e.error().message));
  context.on('console', (m) => {
    if (/Content Security Policy|Refused to/i.test(m.text())) pageErrors.push(m.text());
  });
  context.on('request', (r) => {
    requests.push(r.url());
    const last = r.headers()['last-event-id'];
    if (r.url() === `${origin}/api/events` && last) resumedWith.push(last);
  });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  // Whatever happened, every ticker may end now (none is left waiting for its file).
  if (db) {
    const list = await cli(db, ['--json', 'list']);
    if (list.code === 0) for (const t of JSON.parse(list.stdout) as Array<{ id: string }>) release(t.id);
  }
  if (sup && sup.exitCode === null) {
    sup.kill('SIGTERM');
    await Promise.race([exited(sup), new Promise((r) => setTimeout(r, 20_000))]);
  }
  await cleanups.run();
});

describe('the web board in Chromium', () => {
  it('moves cards live, tails a running log, cancels with the token, and talks only to its server', async () => {
    const hold1 = await add('hold one');
    const hold2 = await add('hold two');
    await waitFor(async () => (await status(hold1)) === 'running' && (await status(hold2)) === 'running', 30_000);

    ({ page } = await openAndMeasure(context, pageUrl));
    page.on('framenavigated', (f) => {
      if (f === page.mainFrame()) navigations++;
    });
    // The token left the address bar (and the history) and stays with the tab.
    expect(page.url()).toBe(`${origin}/`);
    expect(await page.evaluate(`sessionStorage.getItem('kanban-supervisor.token')`)).toBe(token);
    await page.evaluate('window.__sameDocument = 42');

    await card('running', hold1).waitFor({ timeout: 15_000 });
    await card('running', hold2).waitFor({ timeout: 15_000 });
    // Running cards: heartbeat age, elapsed time, CPU and RSS, from the live workers.
    await expect.poll(() => card('running', hold1).locator('.live').textContent(), { timeout: 15_000 }).toMatch(/heartbeat .* ago · .* elapsed · CPU [\d.]+% · RSS [\d.]+ \w+/);

    // A third task waits in ready (the pool is full), then runs when hold one ends, then is done.
    const mover = await add('the mover');
    await card('ready', mover).waitFor({ timeout: 15_000 });
    await shot('1-ready-and-running');
    release(hold1);
    await card('done', hold1).waitFor({ timeout: 30_000 });
    await card('running', mover).waitFor({ timeout: 30_000 });
    expect(await card('ready', mover).count()).toBe(0);

    // Its drawer: the log of the running attempt grows while we look.
    const d = await openCard('running', mover);
    const log = d.locator('pre.log-text');
    await expect.poll(() => log.textContent(), { timeout: 15_000 }).toMatch(/tick \d+ of the mover/);
    const seen = lastTick(await log.textContent());
    await expect.poll(async () => lastTick(await log.textContent()), { timeout: 15_000 }).toBeGreaterThan(seen + 3);
    await expect.poll(() => d.locator('.runs tbody tr').count()).toBe(1);
    await shot('2-drawer-log-tail');
    release(mover);
    await card('done', mover).waitFor({ timeout: 30_000 });
    await expect.poll(() => d.locator('.status-badge').textContent(), { timeout: 15_000 }).toBe('done');
    await expect.poll(() => d.locator('.runs tbody tr td.outcome').first().textContent(), { timeout: 15_000 }).toBe('completed');
    await closeDrawer();

    // Cancel hold two from the page (a POST with the token): it lands in cancelled, its worker stops.
    const d2 = await openCard('running', hold2);
    await d2.locator('button[data-action="cancel"]').click();
    await card('cancelled', hold2).waitFor({ timeout: 30_000 });
    expect(await status(hold2)).toBe('cancelled');
    await waitFor(async () => (await show(db, hold2)).runs.at(-1)?.outcome === 'cancelled', 30_000);
    await expect.poll(() => d2.locator('.runs tbody tr td.outcome').first().textContent(), { timeout: 15_000 }).toBe('cancelled');
    await closeDrawer();
    await shot('3-cancelled');

    // The same document all along: no reload, no navigation.
    expect(await page.evaluate('window.__sameDocument')).toBe(42);
    expect(navigations).toBe(0);
    expect(requests.some((u) => u.startsWith(`${origin}/api/events`))).toBe(true);
    expect(requests.some((u) => u.startsWith(`${origin}/api/runs/`))).toBe(true);
  });

  it('adds a task with a checked payload, blocks, unblocks and retries from the page', async () => {
    const postsBefore = requests.filter((u) => u === `${origin}/api/tasks`).length;
    await page.locator('#add-btn').click();
    const form = page.locator('dialog#add-dialog[open]');
    await form.waitFor();
    await form.getByLabel('Skill').fill('ticker');
    await form.getByLabel('Title (optional)').fill('added from the page');
    // Not JSON: refused in the page, nothing sent.
    await form.getByLabel('Payload (JSON, optional)').fill('{"seconds": ');
    await form.locator('button[type="submit"]').click();
    await expect.poll(() => form.locator('.form-error').textContent()).toMatch(/not valid JSON/);
    expect(await form.getByLabel('Payload (JSON, optional)').getAttribute('aria-invalid')).toBe('true');
    // A skill the board does not know: the server's refusal, shown as it says it.
    await form.getByLabel('Skill').fill('no-such-skill');
    await form.getByLabel('Payload (JSON, optional)').fill('{"seconds": 0.3}');
    await form.locator('button[type="submit"]').click();
    await expect.poll(() => form.locator('.form-error').textContent()).toMatch(/Not added: .*no-such-skill/);
    await form.getByLabel('Skill').fill('ticker');
    await form.locator('button[type="submit"]').click();
    await expect.poll(() => page.locator('dialog#add-dialog[open]').count()).toBe(0);
    const added = await waitFor(async () => {
      const list = JSON.parse((await cli(db, ['--json', 'list'])).stdout) as Array<{ id: string; title: string }>;
      return list.find((t) => t.title === 'added from the page')?.id;
    }, 15_000);
    expect(requests.filter((u) => u === `${origin}/api/tasks`).length - postsBefore).toBe(2);
    // Its payload ends it after 0.3 s.
    await card('done', added).waitFor({ timeout: 30_000 });

    // Fill the pool again so that a new task stays ready: block it with a reason, unblock it.
    const holdA = await add('hold three');
    const holdB = await add('hold four');
    await card('running', holdA).waitFor({ timeout: 30_000 });
    await card('running', holdB).waitFor({ timeout: 30_000 });
    const waiting = await add('to be blocked');
    await card('ready', waiting).waitFor({ timeout: 15_000 });
    const d = await openCard('ready', waiting);
    await d.getByLabel('Reason').fill('waiting for the vendor');
    await d.locator('button[data-action="block"]').click();
    await card('blocked', waiting).waitFor({ timeout: 15_000 });
    await expect.poll(() => card('blocked', waiting).locator('.error').textContent()).toBe('waiting for the vendor');
    // The board's picture (docs/web-board.png is one of these): a task in every column.
    const next = await add('next in line');
    await card('ready', next).waitFor({ timeout: 15_000 });
    await closeDrawer();
    await page.waitForTimeout(2500); // the running cards' live figures, from the status poll
    const bottom = Number(await page.evaluate(`Math.ceil(document.querySelector('main').getBoundingClientRect().bottom) + 12`));
    await page.screenshot({ path: join(SHOTS, 'board.png'), clip: { x: 0, y: 0, width: 1400, height: Math.min(900, Math.max(300, bottom)) } });
    await openCard('blocked', waiting);
    await drawer().locator('button[data-action="unblock"]').click();
    await card('ready', waiting).waitFor({ timeout: 15_000 });
    // Retry a done task: ready again.
    await closeDrawer();
    const d2 = await openCard('done', added);
    await d2.locator('button[data-action="retry"]').click();
    await card('ready', added).waitFor({ timeout: 15_000 });
    await closeDrawer();
    await shot('4-actions');
    for (const id of [waiting, next, holdA, holdB]) release(id);
    await card('done', holdA).waitFor({ timeout: 30_000 });
    await card('done', holdB).waitFor({ timeout: 30_000 });
    await waitFor(async () => (await status(waiting)) === 'done' && (await status(added)) === 'done' && (await status(next)) === 'done', 30_000);
    await card('done', added).waitFor({ timeout: 30_000 });
    await shot('5-all-done');
  });

  it('resumes its event stream with Last-Event-ID across a supervisor restart: a task added and blocked meanwhile appears', async () => {
    const port = new URL(origin).port;
    sup.kill('SIGTERM');
    expect((await exited(sup)).code).toBe(0);
    await expect.poll(() => page.locator('#conn').getAttribute('data-state'), { timeout: 15_000 }).not.toBe('live');
    // Added and blocked while no supervisor (and no stream) is there, nothing happens to it after:
    // the page can learn of it only from the resumed stream.
    const meanwhile = await add('added while the supervisor was down');
    expect((await cli(db, ['block', meanwhile, '--reason', 'blocked while the supervisor was down'])).code).toBe(0);
    sup = cleanups.startCli(db, ['run', '--max-concurrent-workers', '2'], cleanEnv({ KANBAN_HTTP: `127.0.0.1:${port}`, LOG_FORMAT: 'json' }));
    await waitFor(() => logEvents(sup.output(), 'http_started')[0], 30_000);
    await expect.poll(() => page.locator('#conn').getAttribute('data-state'), { timeout: 20_000 }).toBe('live');
    await card('blocked', meanwhile).waitFor({ timeout: 20_000 });
    expect(resumedWith.length).toBeGreaterThan(0);
    expect(await page.evaluate('window.__sameDocument')).toBe(42);
  });

  it('sent every request to the loopback server it was opened from, and broke no rule of its CSP', () => {
    expect(pageErrors).toEqual([]);
    expect(requests.length).toBeGreaterThan(20);
    expect(requests.filter((u) => !u.startsWith(`${origin}/`))).toEqual([]);
  });
});
