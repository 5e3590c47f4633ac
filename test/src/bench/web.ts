/**
 * Benchmark "web" (the web board's first render): a board of 10,000 tasks served by a real
 * supervisor, opened in Chromium; navigation start → every column's first page rendered (the page's
 * `board-ready` mark), the first (cold) load and the median of several. The same code as the
 * browser test (../web-board.ts). Skipped, with an INFO line, where /usr/bin/chromium is absent.
 */
import { join } from 'node:path';
import { Sup, fmt, median } from '../lib.js';
import { CHROMIUM, chromiumPresent, fillBoard, launchChromium, openAndMeasure } from '../web-board.js';
import { SHORT, h, res, tail } from './setup.js';

const TASKS = 10_000;

export async function benchWeb(): Promise<void> {
  const S = 'web board';
  const figure = `first render, ${fmt(TASKS)} tasks (navigation start → every column's first page), cold / median`;
  if (!chromiumPresent()) {
    res.add({ scenario: S, figure, value: 'not measured', target: '≤ 1 s', pass: null, note: `no Chromium at ${CHROMIUM} (apt-get install -y chromium, or KANBAN_CHROMIUM)` });
    return;
  }
  const dir = h.dir('web');
  const db = join(dir, 'board', 'kanban.db');
  const t0 = performance.now();
  await fillBoard(db, TASKS);
  process.stdout.write(`  (board filled: ${fmt(TASKS)} tasks in ${fmt((performance.now() - t0) / 1000)} s)\n`);
  const sup = new Sup(h, db, { env: { KANBAN_HTTP: '127.0.0.1:0', LOG_FORMAT: 'json' }, logFile: join(dir, 'supervisor.log') });
  const browser = await launchChromium();
  try {
    const started = await sup.waitFor((l) => l.event === 'http_started', 30_000);
    if (!started || !(await sup.waitStarted(30_000))) throw new Error(`the supervisor did not start its HTTP server:\n${tail(sup)}`);
    const url = String(started.url);
    const runs = SHORT ? 3 : 7;
    const ms: number[] = [];
    for (let i = 0; i < runs; i++) {
      const { page, render } = await openAndMeasure(browser.context, url);
      if (render.cards !== 4 * 50) throw new Error(`the first render showed ${render.cards} cards, not ${4 * 50}`);
      ms.push(render.ms);
      await page.close();
    }
    const med = median(ms);
    res.add({
      scenario: S,
      figure: `${figure} (${runs} loads)`,
      value: `${fmt(ms[0]!, 0)} / ${fmt(med, 0)} ms`,
      number: med,
      target: '≤ 1 s',
      pass: ms.every(Number.isFinite) && med <= 1000,
      note: `every load: ${ms.map((x) => fmt(x, 0)).join(', ')} ms`,
    });
    res.extra.web = { tasks: TASKS, firstRenderMs: ms };
  } finally {
    await browser.close();
    await sup.stop();
  }
}
