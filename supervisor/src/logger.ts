import { pino, type Logger } from 'pino';
import { createRequire } from 'node:module';
import type PinoPretty from 'pino-pretty';
import type { LogFormat, LogLevel } from '@kanban-supervisor/policies';
import { printable } from './text.js';

/** Keys the pretty line shows in its head (time, level, supervisor pid) or not at all. */
const HEAD_KEYS = new Set(['level', 'time', 'pid', 'hostname', 'name', 'msg']);

function fieldText(key: string, v: unknown): string {
  if (key === 'err' && v !== null && typeof v === 'object') {
    const e = v as { message?: unknown; code?: unknown };
    return JSON.stringify(`${String(e.message ?? '')}${e.code !== undefined ? ` (${String(e.code)})` : ''}`);
  }
  if (typeof v === 'string') return /^[^\s"'=\\]+$/.test(v) ? v : JSON.stringify(v);
  return JSON.stringify(v) ?? String(v);
}

/**
 * One line per event: `[12:00:00.123] INFO (4242): worker spawned event=spawned task=t… run=r… pid=…`.
 * Every field is escaped (printable): a worker's error text cannot forge lines or reach the terminal.
 */
export function prettyLine(log: Record<string, unknown>, messageKey: string): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(log)) {
    if (HEAD_KEYS.has(k) || v === undefined) continue;
    parts.push(`${k}=${fieldText(k, v)}`);
  }
  return printable(`${String(log[messageKey] ?? '')}${parts.length ? ' ' + parts.join(' ') : ''}`);
}

/**
 * pino, one event per state change: JSON lines, or one human-readable line per event (`pretty`).
 * `auto` (the default) is pretty when stdout is a terminal, JSON lines otherwise.
 */
export function makeLogger(level: LogLevel, format: LogFormat = 'auto'): Logger {
  const base = { level, base: { pid: process.pid, name: 'kanban-supervisor' } };
  const usePretty = format === 'pretty' || (format === 'auto' && process.stdout.isTTY === true);
  if (usePretty) {
    // Not singleLine (with hideObject it drops the line end): the fields are in the message line.
    // pino-pretty is loaded only for a pretty log (a terminal): ~10 MB a JSON-logging daemon does not carry.
    const pretty = createRequire(import.meta.url)('pino-pretty') as typeof PinoPretty;
    return pino(
      base,
      pretty({
        colorize: process.stdout.isTTY === true,
        sync: true,
        translateTime: 'SYS:HH:MM:ss.l',
        ignore: 'hostname,name',
        hideObject: true,
        messageFormat: (log, messageKey) => prettyLine(log, messageKey),
      }),
    );
  }
  return pino(base, pino.destination({ fd: 1, sync: true }));
}
export type { Logger };
