// The event stream (/api/events, Server-Sent Events) read with fetch rather than EventSource, so
// that it can carry the Bearer token (a server bound beyond loopback wants it for reads too) and
// resume exactly: each reconnect sends Last-Event-ID, the id of the last event received.
import { token } from './api.js';

export class EventStream {
  /**
   * opts: { onEvent(type, data, id), onState('connecting' | 'live' | 'reconnecting'), onReset() }
   * onReset: the server refused our Last-Event-ID (another board?): we start over at its end, and
   * what happened meanwhile must be read again.
   */
  constructor(url, opts) {
    this.url = url;
    this.opts = opts;
    this.lastId = null;
    this.retryMs = 2000;
    this.abort = null;
    this.stopped = false;
    /** Resolves once the stream is open the first time (the server has its place in the feed). */
    this.opened = new Promise((r) => (this.markOpen = r));
  }

  start() {
    void this.loop();
  }

  stop() {
    this.stopped = true;
    this.abort?.abort();
  }

  async loop() {
    let first = true;
    while (!this.stopped) {
      this.opts.onState(first ? 'connecting' : 'reconnecting');
      first = false;
      try {
        await this.once();
      } catch {
        /* a dropped connection: try again */
      }
      if (this.stopped) return;
      await new Promise((r) => setTimeout(r, this.retryMs));
    }
  }

  async once() {
    this.abort = new AbortController();
    const headers = { accept: 'text/event-stream' };
    const t = token();
    if (t) headers.authorization = `Bearer ${t}`;
    if (this.lastId !== null) headers['last-event-id'] = this.lastId;
    const res = await fetch(this.url, { headers, cache: 'no-store', signal: this.abort.signal });
    if (res.status === 400 && this.lastId !== null) {
      this.lastId = null;
      this.opts.onReset();
      return;
    }
    if (!res.ok || !res.body) throw new Error(`event stream: ${res.status}`);
    this.opts.onState('live');
    if (!performance.getEntriesByName('stream-open').length) performance.mark('stream-open');
    this.markOpen();
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    let ev = { type: '', data: [], id: null };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value;
      let i;
      while ((i = buf.search(/\r\n|\r|\n/)) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + (buf[i] === '\r' && buf[i + 1] === '\n' ? 2 : 1));
        if (line === '') {
          if (ev.id !== null) this.lastId = ev.id;
          if (ev.data.length) this.opts.onEvent(ev.type || 'message', ev.data.join('\n'), ev.id ?? this.lastId);
          ev = { type: '', data: [], id: null };
          continue;
        }
        if (line.startsWith(':')) continue;
        const c = line.indexOf(':');
        const field = c < 0 ? line : line.slice(0, c);
        let val = c < 0 ? '' : line.slice(c + 1);
        if (val.startsWith(' ')) val = val.slice(1);
        if (field === 'event') ev.type = val;
        else if (field === 'data') ev.data.push(val);
        else if (field === 'id' && !val.includes('\0')) ev.id = val;
        else if (field === 'retry' && /^\d+$/.test(val)) this.retryMs = Math.max(500, Math.min(60_000, Number(val)));
      }
    }
  }
}
