/**
 * A board of 10,000 tasks opens in under a second: navigation start → every column's first page
 * rendered (the page's `board-ready` mark), in Chromium, served by a real supervisor. The same
 * measurement is a bench figure (test/src/bench/web.ts, the code in test/src/web-board.ts). Also:
 * the board at a phone's width (no sideways scrolling of the page itself, controls named).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Cleanups, ROOT, cleanEnv, exited, logEvents, waitFor } from '../src/common.js';
import { CHROMIUM, chromiumPresent, fillBoard, launchChromium, openAndMeasure, type WebBrowser } from '../src/web-board.js';

const SHOTS = join(ROOT, 'test-results', 'e2e');
const TASKS = 10_000;
const cleanups = new Cleanups();
let url = '';
let counts: Record<string, number> = {};
let sup: ReturnType<Cleanups['startCli']>;
let browser: WebBrowser | null = null;

beforeAll(async () => {
  if (!chromiumPresent()) throw new Error(`no Chromium at ${CHROMIUM}: apt-get install -y chromium (or set KANBAN_CHROMIUM to a Chromium binary)`);
  mkdirSync(SHOTS, { recursive: true });
  const { db } = cleanups.boardDir('ks-e2e-10k-');
  counts = await fillBoard(db, TASKS);
  sup = cleanups.startCli(db, ['run'], cleanEnv({ KANBAN_HTTP: '127.0.0.1:0', LOG_FORMAT: 'json' }));
  url = String((await waitFor(() => logEvents(sup.output(), 'http_started')[0], 30_000)).url);
  await waitFor(() => logEvents(sup.output(), 'started')[0], 30_000);
}, 120_000);

afterAll(async () => {
  await browser?.close();
  if (sup && sup.exitCode === null) {
    sup.kill('SIGTERM');
    await Promise.race([exited(sup), new Promise((r) => setTimeout(r, 20_000))]);
  }
  await cleanups.run();
});

describe('the web board with 10,000 tasks', () => {
  it('renders every column\'s first page within a second of navigation start', async () => {
    browser = await launchChromium();
    const times: number[] = [];
    for (let i = 0; i < 3; i++) {
      const { page, render } = await openAndMeasure(browser.context, url);
      times.push(render.ms);
      // Each column: its first page (50 cards) and the board's count.
      expect(render.cards).toBe(4 * 50);
      for (const [st, n] of Object.entries(counts)) await expect.poll(() => page.locator(`section.column[data-status="${st}"] .count`).textContent()).toBe(String(n));
      if (i === 0) await page.screenshot({ path: join(SHOTS, 'first-render-10k.png') });
      await page.close();
    }
    const sorted = [...times].sort((a, b) => a - b);
    const median = sorted[1]!;
    process.stdout.write(`web board first render, ${TASKS.toLocaleString('en-US')} tasks: ${times.map((t) => t.toFixed(0)).join(', ')} ms (median ${median.toFixed(0)} ms; target ≤ 1000 ms)\n`);
    expect(times.every(Number.isFinite)).toBe(true);
    expect(median).toBeLessThanOrEqual(1000);
  });

  it('loads the next page of a column on "Load more", and fits a phone\'s width', async () => {
    browser ??= await launchChromium();
    const phone = await browser.context.newPage();
    await phone.setViewportSize({ width: 390, height: 844 });
    await phone.goto(url);
    await phone.waitForSelector('html[data-ready="true"]');
    // The page itself never scrolls sideways: the columns do, in their own box.
    expect(await phone.evaluate('document.documentElement.scrollWidth <= window.innerWidth')).toBe(true);
    const done = phone.locator('section.column[data-status="done"]');
    await expect.poll(() => done.locator('[data-task-id]').count()).toBe(50);
    const more = done.getByRole('button', { name: 'Load more Done tasks' });
    await more.click();
    await expect.poll(() => done.locator('[data-task-id]').count()).toBe(100);
    // Newest first, no task twice across the two pages.
    // (typed loosely: the tests are compiled without the DOM's types)
    const ids: string[] = await done.locator('[data-task-id]').evaluateAll((els: any[]) => els.map((e) => String(e.dataset.taskId)));
    expect(new Set(ids).size).toBe(100);
    expect([...ids].sort().reverse()).toEqual(ids);
    // Every control has a name.
    const unnamed = await phone.evaluate(`[...document.querySelectorAll('button, input, textarea, select')].filter((e) => {
      const label = e.getAttribute('aria-label') || (e.id && document.querySelector('label[for="' + e.id + '"]')) || e.textContent.trim();
      return !label && e.offsetParent !== null;
    }).map((e) => e.outerHTML.slice(0, 80))`);
    expect(unnamed).toEqual([]);
    await phone.screenshot({ path: join(SHOTS, 'phone.png') });
    await phone.close();
  });
});
