// Three small plots of the supervisor's own recent history (/api/history, one point a minute over
// the last hour): tasks done and failed per minute, pool use, dispatch latency (p50, p99). Plain
// SVG; the figures' values are in their captions (text), the drawings are decoration with a summary.
import { fmtAge, h, s } from './fmt.js';

const W = 300;
const H = 70;

function norm(p) {
  const g = (a, b) => (p[a] !== undefined ? p[a] : p[b]);
  const num = (v) => (v === null || v === undefined || !Number.isFinite(Number(v)) ? null : Number(v));
  return {
    at: num(p.at) ?? 0,
    done: num(p.done) ?? 0,
    failed: num(p.failed) ?? 0,
    poolUsed: num(g('poolUsed', 'pool_used')),
    poolSize: num(g('poolSize', 'pool_size')),
    p50: num(g('dispatchP50Ms', 'dispatch_p50_ms')),
    p99: num(g('dispatchP99Ms', 'dispatch_p99_ms')),
  };
}

export class Plots {
  constructor(root) {
    this.root = root;
    this.figs = {
      throughput: this.figure('throughput', 'Done and failed per minute'),
      pool: this.figure('pool', 'Pool use'),
      latency: this.figure('latency', 'Dispatch latency'),
    };
  }

  figure(key, title) {
    const value = h('span', { class: 'value', text: '…' });
    const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': title, class: 'plot' });
    const fig = h('figure', { class: `fig fig-${key}` }, h('figcaption', {}, h('span', { class: 'fig-title', text: title }), ' ', value), svg);
    this.root.append(fig);
    return { fig, svg, value, title };
  }

  /** Draw the points (any order; the last hour is shown). */
  render(points) {
    const pts = (Array.isArray(points) ? points : []).map(norm).filter((p) => p.at > 0).sort((a, b) => a.at - b.at);
    const end = pts.length ? pts.at(-1).at : Date.now();
    const start = end - 59 * 60_000;
    const x = (at) => ((at - start) / (60 * 60_000)) * W;
    const bw = W / 60;
    const recent = pts.filter((p) => p.at >= start);
    const sum = (k) => recent.reduce((a, p) => a + p[k], 0);
    const last = recent.at(-1) ?? null;

    // Done (up) and failed (down, from the middle line), per minute.
    {
      const f = this.figs.throughput;
      const max = Math.max(1, ...recent.map((p) => Math.max(p.done, p.failed)));
      const mid = H * 0.62;
      const kids = [s('line', { x1: 0, x2: W, y1: mid, y2: mid, class: 'axis' })];
      for (const p of recent) {
        const dh = (p.done / max) * (mid - 2);
        const fh = (p.failed / max) * (H - mid - 2);
        if (dh > 0) kids.push(s('rect', { x: x(p.at), y: mid - dh, width: bw * 0.8, height: dh, class: 'bar-done' }));
        if (fh > 0) kids.push(s('rect', { x: x(p.at), y: mid, width: bw * 0.8, height: fh, class: 'bar-failed' }));
      }
      f.svg.replaceChildren(...kids);
      const text = `${sum('done')} done, ${sum('failed')} failed in the last hour${last ? ` (last minute ${last.done} / ${last.failed})` : ''}`;
      f.value.textContent = text;
      f.svg.setAttribute('aria-label', `${f.title}: ${text}`);
    }
    // Pool: used over size.
    {
      const f = this.figs.pool;
      const max = Math.max(1, ...recent.map((p) => Math.max(p.poolSize ?? 0, p.poolUsed ?? 0)));
      const y = (v) => H - 2 - (v / max) * (H - 4);
      const used = recent.filter((p) => p.poolUsed !== null);
      const size = recent.filter((p) => p.poolSize !== null);
      const kids = [];
      if (size.length) kids.push(s('polyline', { points: size.map((p) => `${x(p.at) + bw / 2},${y(p.poolSize)}`).join(' '), class: 'line-size' }));
      if (used.length) {
        const line = used.map((p) => `${x(p.at) + bw / 2},${y(p.poolUsed)}`).join(' ');
        kids.push(s('polygon', { points: `${x(used[0].at) + bw / 2},${H} ${line} ${x(used.at(-1).at) + bw / 2},${H}`, class: 'area-used' }));
        kids.push(s('polyline', { points: line, class: 'line-used' }));
      }
      f.svg.replaceChildren(...kids);
      const text = last && last.poolUsed !== null ? `${last.poolUsed} of ${last.poolSize ?? '?'} workers` : 'no data yet';
      f.value.textContent = text;
      f.svg.setAttribute('aria-label', `${f.title}: ${text}`);
    }
    // Dispatch latency, p50 and p99 (ms).
    {
      const f = this.figs.latency;
      const have = recent.filter((p) => p.p99 !== null || p.p50 !== null);
      const max = Math.max(1, ...have.map((p) => Math.max(p.p99 ?? 0, p.p50 ?? 0)));
      const y = (v) => H - 2 - (v / max) * (H - 4);
      const line = (k, cls) => {
        const ps = have.filter((p) => p[k] !== null);
        return ps.length ? s('polyline', { points: ps.map((p) => `${x(p.at) + bw / 2},${y(p[k])}`).join(' '), class: cls }) : null;
      };
      f.svg.replaceChildren(...[line('p99', 'line-p99'), line('p50', 'line-p50')].filter(Boolean));
      const l = have.at(-1);
      const text = l ? `p50 ${fmtAge(l.p50)}, p99 ${fmtAge(l.p99)} (last minute)` : 'no dispatches yet';
      f.value.textContent = text;
      f.svg.setAttribute('aria-label', `${f.title}: ${text}`);
    }
  }
}
