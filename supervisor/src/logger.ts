import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';
import type { LogLevel } from '@kanban-supervisor/policies';

/** pino JSON, one line per state change; human-readable when stdout is a terminal. */
export function makeLogger(level: LogLevel): Logger {
  const base = { level, base: { pid: process.pid, name: 'kanban-supervisor' } };
  if (process.stdout.isTTY) {
    return pino(base, pretty({ colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'hostname,name' }));
  }
  return pino(base, pino.destination({ fd: 1, sync: true }));
}
export type { Logger };
