/**
 * The web board in a real browser, shared by the browser test (test/e2e) and the bench: Debian's
 * Chromium driven by playwright-core (a fresh profile each time, nothing reaching out of the
 * machine), a board filled with many tasks by direct SQL, and the page's first render measured
 * from navigation start to the moment every column's first page is on screen (the page sets
 * `data-ready` on <html> and a `board-ready` performance mark then).
 *
 * playwright-core is loaded only when a browser is launched: the rest of the bench never needs it.
 */
import Database from 'better-sqlite3';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { localConnectionOf, openBoard } from '@kanban-supervisor/board';

/** The browser: Debian's Chromium (`apt-get install -y chromium`); KANBAN_CHROMIUM names another. */
export const CHROMIUM = process.env.KANBAN_CHROMIUM || '/usr/bin/chromium';

/** No sandbox (CI runs as root), no GPU, and none of Chromium's own traffic (updates, sync, QUIC probes). */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export function chromiumPresent(): boolean {
  return existsSync(CHROMIUM);
}

export interface WebBrowser {
  context: BrowserContext;
  /** Close the browser and remove its profile. */
  close(): Promise<void>;
}

/** Chromium with a fresh profile (--user-data-dir in a new temp dir), laptop-sized by default. */
export async function launchChromium(opts: { width?: number; height?: number } = {}): Promise<WebBrowser> {
  const { chromium } = await import('playwright-core');
  const profile = mkdtempSync(join(tmpdir(), 'ks-chromium-'));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: opts.width ?? 1400, height: opts.height ?? 900 },
      timeout: 60_000,
    });
  } catch (e) {
    rmSync(profile, { recursive: true, force: true });
    throw e;
  }
  return {
    context,
    close: async () => {
      await context.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

export interface FirstRender {
  /** Navigation start → every column's first page rendered, ms (the page's `board-ready` mark). */
  ms: number;
  /** Cards on screen then, and each column's count as shown. */
  cards: number;
  counts: Record<string, string>;
}

/** Open `url` in a new tab and measure its first render; the tab stays open for the caller (close it). */
export async function openAndMeasure(context: BrowserContext, url: string, timeoutMs = 30_000): Promise<{ page: Page; render: FirstRender }> {
  const page = await context.newPage();
  await page.goto(url, { waitUntil: 'commit', timeout: timeoutMs });
  await page.waitForSelector('html[data-ready="true"]', { timeout: timeoutMs });
  // A string, evaluated in the page (the tests are compiled without the DOM's types).
  const render = (await page.evaluate(`(() => {
    const mark = performance.getEntriesByName('board-ready')[0];
    const counts = {};
    for (const c of document.querySelectorAll('section.column')) counts[c.dataset.status] = c.querySelector('.count').textContent;
    return { ms: mark ? mark.startTime : NaN, cards: document.querySelectorAll('[data-task-id]').length, counts };
  })()`)) as FirstRender;
  return { page, render };
}

/** How a filled board's tasks are spread over the statuses (fractions of the total). */
const SPREAD: Array<[status: string, share: number]> = [
  ['done', 0.4],
  ['cancelled', 0.2],
  ['blocked', 0.2],
  ['ready', 0.2],
];

/**
 * A board of `total` tasks (skill `noop`), inserted by direct SQL in one transaction: done,
 * cancelled, blocked (with a last error) and ready ones whose retry is a day away (a supervisor
 * on the board leaves them be). Created over the last ten days. Returns the count per status.
 */
export async function fillBoard(db: string, total: number): Promise<Record<string, number>> {
  const b = await openBoard(db);
  await b.putSkill({ name: 'noop', argv: ['/bin/true'] });
  localConnectionOf(b)!.closeNow('TRUNCATE');
  const sql = new Database(db);
  const counts: Record<string, number> = {};
  try {
    sql.pragma('synchronous = OFF');
    const ins = sql.prepare(
      `INSERT INTO tasks (id, title, skill, payload, status, priority, created_at, updated_at, not_before, consecutive_failures, last_error)
       VALUES (?, ?, 'noop', ?, ?, 0, ?, ?, ?, ?, ?)`,
    );
    const now = Date.now();
    const span = 10 * 86_400_000;
    sql.transaction(() => {
      let i = 0;
      for (const [status, share] of SPREAD) {
        const n = status === SPREAD.at(-1)![0] ? total - i : Math.round(total * share);
        counts[status] = n;
        for (let k = 0; k < n; k++, i++) {
          const created = now - span + Math.floor((i * span) / total);
          const blocked = status === 'blocked';
          ins.run(
            `tf${i.toString(36).padStart(8, '0')}`,
            `${status} task ${k} of the filled board`,
            JSON.stringify({ n: i }),
            status,
            created,
            created + 1000,
            status === 'ready' ? now + 86_400_000 : 0,
            blocked ? 2 : 0,
            blocked ? `exit code 1 (attempt 2 of 2): filled board, task ${k}` : null,
          );
        }
      }
    })();
    sql.pragma('wal_checkpoint(TRUNCATE)');
  } finally {
    sql.close();
  }
  return counts;
}
