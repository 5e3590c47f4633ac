/**
 * What the web page asks of the supervisor while it is open, without a browser (the bench measures
 * the supervisor's CPU, not Chromium's): the event stream read as it comes, `/api/status` every
 * 2 s, `/api/history` every 20 s, and the first page of each column at the start, as web/public/app.js
 * does with the tab visible. Stop it with stop().
 */
const COLUMNS = ['ready', 'running', 'blocked', 'done', 'cancelled'];

export interface PageClient {
  /** Requests answered and event-stream bytes read so far. */
  readonly stats: { requests: number; failures: number; streamBytes: number };
  stop(): Promise<void>;
}

export function openPage(baseUrl: string): PageClient {
  const stats = { requests: 0, failures: 0, streamBytes: 0 };
  const abort = new AbortController();
  const timers: NodeJS.Timeout[] = [];
  const get = async (path: string) => {
    try {
      const r = await fetch(new URL(path, baseUrl), { signal: abort.signal, headers: { accept: 'application/json' } });
      await r.arrayBuffer();
      if (r.ok) stats.requests++;
      else stats.failures++;
    } catch {
      if (!abort.signal.aborted) stats.failures++;
    }
  };
  const stream = (async () => {
    try {
      const r = await fetch(new URL('/api/events', baseUrl), { signal: abort.signal, headers: { accept: 'text/event-stream' } });
      if (!r.ok || !r.body) {
        stats.failures++;
        return;
      }
      for await (const chunk of r.body) stats.streamBytes += (chunk as Uint8Array).byteLength;
    } catch {
      if (!abort.signal.aborted) stats.failures++;
    }
  })();
  void (async () => {
    await Promise.all(COLUMNS.map((c) => get(`/api/tasks?status=${c}&limit=50`)));
    await get('/api/status');
    await get('/api/history');
  })();
  timers.push(setInterval(() => void get('/api/status'), 2000));
  timers.push(setInterval(() => void get('/api/history'), 20_000));
  return {
    stats,
    async stop() {
      for (const t of timers) clearInterval(t);
      abort.abort();
      await stream;
    },
  };
}
