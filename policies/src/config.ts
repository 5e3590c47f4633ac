/**
 * Configuration: environment variables, overridden by CLI flags, validated once.
 * Every failure names the variable (or flag) and the value it got.
 */
import { LIMITS, type LimitRange } from './limits.js';
import { EXIT } from './reasons.js';

export class ConfigError extends Error {
  override name = 'ConfigError';
  /** Process exit status for configuration and usage errors. */
  readonly exitCode = EXIT.usage;
}

export interface IntSpec {
  min: number;
  max: number;
}

const span = (spec: IntSpec) => `from ${spec.min} to ${spec.max}`;

/** Parse a whole number in [min, max]; `name` is what the message blames. */
export function parseIntStrict(name: string, raw: string, spec: IntSpec): number {
  const text = raw.trim();
  if (!/^[+-]?\d+$/.test(text)) {
    throw new ConfigError(`${name} must be an integer ${span(spec)}, got ${JSON.stringify(raw)}`);
  }
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < spec.min || n > spec.max) {
    throw new ConfigError(`${name} must be an integer ${span(spec)}, got ${JSON.stringify(raw)}`);
  }
  return n;
}

/** Parse a decimal number in [min, max]. */
export function parseNumberStrict(name: string, raw: string, spec: IntSpec): number {
  const text = raw.trim();
  if (!/^[+-]?(\d+(\.\d*)?|\.\d+)$/.test(text)) {
    throw new ConfigError(`${name} must be a number ${span(spec)}, got ${JSON.stringify(raw)}`);
  }
  const n = Number(text);
  if (!Number.isFinite(n) || n < spec.min || n > spec.max) {
    throw new ConfigError(`${name} must be a number ${span(spec)}, got ${JSON.stringify(raw)}`);
  }
  return n;
}

/**
 * Parse a per-skill or per-task limit given as text (a CLI flag) against its range in LIMITS, the
 * same range the board, the supervisor and the worker runtime accept. `name` is what the message blames.
 */
export function parseLimit(name: string, raw: string, range: LimitRange): number {
  return range.integer ? parseIntStrict(name, raw, range) : parseNumberStrict(name, raw, range);
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Supervisor log format: `auto` is pretty on a terminal and JSON lines otherwise. */
export const LOG_FORMATS = ['auto', 'pretty', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

export interface SupervisorConfig {
  db: string;
  maxConcurrentWorkers: number;
  reclaimGraceSeconds: number;
  crashGraceSeconds: number;
  failureLimit: number;
  backoffBaseSeconds: number;
  backoffFactor: number;
  backoffMaxSeconds: number;
  maxRuntimeSeconds: number;
  heartbeatTimeoutSeconds: number;
  tickIntervalMs: number;
  logLevel: LogLevel;
  logFormat: LogFormat;
  maxWorkerRssMb: number;
  logMaxBytes: number;
  quarantineProbeSeconds: number;
  stormDistinctTasks: number;
  /** Retention: finished tasks older than this many days are pruned by the supervisor (0: off). */
  retentionDays: number;
  /** This host's id on a PostgreSQL board (KANBAN_HOST_ID); null: /etc/machine-id (read by the supervisor). */
  hostId: string | null;
  /** The lease of a supervisor's row on a PostgreSQL board, seconds. */
  leaseSeconds: number;
  /** A PostgreSQL board's local state folder (KANBAN_STATE_DIR); null: under $XDG_STATE_HOME (board-files). */
  stateDir: string | null;
  /** The HTTP server's address (KANBAN_HTTP / run --http); null: off. */
  http: HttpAddress | null;
  /** Whether the HTTP address was given (a flag or the variable) rather than the default: then failing to bind it is fatal. */
  httpExplicit: boolean;
  /** The bearer token of the HTTP server (KANBAN_HTTP_TOKEN; never a flag, never logged); null: generated (loopback only). */
  httpToken: string | null;
  /** Whether workers report through the supervisor's local socket (REPORT_CHANNEL / run --report-channel). */
  reportChannel: boolean;
  /** How long a report commit of the channel waits after the previous one to gather more reports, ms (REPORT_BATCH_WINDOW_MS). */
  reportBatchWindowMs: number;
  /** How long heartbeats alone wait for company before a report commit of their own, ms (REPORT_HEARTBEAT_WINDOW_MS). */
  reportHeartbeatWindowMs: number;
}

/** Where the HTTP server listens. `host` is an IP literal (IPv6 without brackets) or a host name. */
export interface HttpAddress {
  host: string;
  port: number;
}

/** The HTTP server's default address: loopback only. */
export const DEFAULT_HTTP = '127.0.0.1:7433';

/** Whether `host` is a loopback address (127.0.0.0/8, ::1, localhost). */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** `[HOST:]PORT` or `off`, as KANBAN_HTTP and `run --http` take it (an IPv6 host in brackets: `[::1]:7433`). */
export function parseHttpAddress(name: string, raw: string): HttpAddress | null {
  const text = raw.trim();
  if (text.toLowerCase() === 'off') return null;
  const bad = (why: string) => new ConfigError(`${name} must be [HOST:]PORT or off (e.g. ${DEFAULT_HTTP}), got ${JSON.stringify(raw)}: ${why}`);
  let host = '127.0.0.1';
  let portText = text;
  const v6 = /^\[([0-9A-Fa-f:.]+)\]:(.*)$/.exec(text);
  if (v6) {
    host = v6[1]!;
    portText = v6[2]!;
  } else if (text.includes(':')) {
    const i = text.lastIndexOf(':');
    host = text.slice(0, i);
    portText = text.slice(i + 1);
    if (host.includes(':')) throw bad('an IPv6 address goes in brackets, [::1]:7433');
    if (!/^[A-Za-z0-9.-]{1,253}$/.test(host)) throw bad('the host is not an IP address or a host name');
  }
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65_535) throw bad('the port must be a whole number from 0 to 65535 (0: any free port)');
  return { host, port: Number(portText) };
}

/** What a KANBAN_HTTP_TOKEN must look like: 16-256 visible ASCII characters (it travels in a header and a URL fragment). */
export const HTTP_TOKEN_PATTERN = /^[A-Za-z0-9._~+/=-]{16,256}$/;

/**
 * 'hostId' and 'dir' are optional: unset (or empty in the environment) is null. A host id is 1-128
 * letters, digits or . _ : - (it goes into the board's rows and the workers' KANBAN_HOST_ID).
 */
type Kind = 'int' | 'number' | 'string' | 'level' | 'format' | 'hostId' | 'dir' | 'http' | 'secret' | 'onoff';

/** What KANBAN_HOST_ID (and /etc/machine-id, its fallback) must look like. */
export const HOST_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;
export const HOST_ID_RULE = '1-128 letters, digits or . _ : -';

/** The lease must outlive this many ticks: it is renewed once per tick. */
export const LEASE_MIN_TICKS = 3;

interface VarSpec {
  key: keyof SupervisorConfig;
  env: string;
  flag: string;
  kind: Kind;
  def: string;
  /** How `--help` and the README show the default, when `def` does not say it (an optional value's fallback). */
  shownDefault?: string;
  range?: IntSpec;
  help: string;
  /** Read from the environment only (a secret: a flag would show in `ps`); `run` has no flag for it. */
  envOnly?: boolean;
}

/** The board when neither --db nor KANBAN_DB names one. */
export const DEFAULT_DB = './.kanban/kanban.db';

/** The single table of tunables: README, `--help` and validation all come from it. */
export const CONFIG_VARS: readonly VarSpec[] = [
  { key: 'db', env: 'KANBAN_DB', flag: '--db', kind: 'string', def: DEFAULT_DB, help: 'board path' },
  { key: 'maxConcurrentWorkers', env: 'MAX_CONCURRENT_WORKERS', flag: '--max-concurrent-workers', kind: 'int', def: '4', range: { min: 1, max: 1024 }, help: 'live workers at once' },
  { key: 'reclaimGraceSeconds', env: 'RECLAIM_GRACE_SECONDS', flag: '--reclaim-grace', kind: 'number', def: '30', range: LIMITS.reclaimGraceSeconds, help: 'SIGTERM → SIGKILL grace' },
  { key: 'crashGraceSeconds', env: 'CRASH_GRACE_SECONDS', flag: '--crash-grace', kind: 'number', def: '30', range: { min: 0, max: 86_400 }, help: 'how young a run whose pid looks dead may be before it is judged crashed' },
  { key: 'failureLimit', env: 'FAILURE_LIMIT', flag: '--failure-limit', kind: 'int', def: '2', range: LIMITS.failureLimit, help: 'attempts per task: blocked after this many counted failures in a row (task --max-attempts overrides)' },
  { key: 'backoffBaseSeconds', env: 'BACKOFF_BASE_SECONDS', flag: '--backoff-base', kind: 'number', def: '1', range: { min: 0, max: 86_400 }, help: 'first retry delay' },
  { key: 'backoffFactor', env: 'BACKOFF_FACTOR', flag: '--backoff-factor', kind: 'number', def: '4', range: { min: 1, max: 100 }, help: 'growth of the retry delay' },
  { key: 'backoffMaxSeconds', env: 'BACKOFF_MAX_SECONDS', flag: '--backoff-max', kind: 'number', def: '300', range: { min: 0, max: 604_800 }, help: 'retry delay cap' },
  { key: 'maxRuntimeSeconds', env: 'MAX_RUNTIME_SECONDS', flag: '--max-runtime', kind: 'number', def: '3600', range: LIMITS.maxRuntimeSeconds, help: 'default max runtime per run' },
  { key: 'heartbeatTimeoutSeconds', env: 'HEARTBEAT_TIMEOUT_SECONDS', flag: '--heartbeat-timeout', kind: 'number', def: '0', range: LIMITS.heartbeatTimeoutSeconds, help: 'default stall limit (0 = off)' },
  { key: 'tickIntervalMs', env: 'TICK_INTERVAL_MS', flag: '--tick-interval-ms', kind: 'int', def: '1000', range: { min: 10, max: 60_000 }, help: 'longest time between ticks' },
  { key: 'logLevel', env: 'LOG_LEVEL', flag: '--log-level', kind: 'level', def: 'info', help: 'pino level' },
  { key: 'logFormat', env: 'LOG_FORMAT', flag: '--log-format', kind: 'format', def: 'auto', help: 'pretty (one line per event), json (JSON lines) or auto (pretty on a terminal)' },
  { key: 'maxWorkerRssMb', env: 'MAX_WORKER_RSS_MB', flag: '--max-worker-rss-mb', kind: 'int', def: '0', range: LIMITS.maxRssMb, help: 'default memory limit per worker process group (0 = off)' },
  { key: 'logMaxBytes', env: 'LOG_MAX_BYTES', flag: '--log-max-bytes', kind: 'int', def: String(8 * 1024 * 1024), range: { min: 1024, max: 2 ** 40 }, help: 'bound of each run\'s log file' },
  { key: 'quarantineProbeSeconds', env: 'QUARANTINE_PROBE_SECONDS', flag: '--quarantine-probe', kind: 'number', def: '30', range: { min: 0.1, max: 1800 }, help: 'first re-probe delay of a damaged board (doubles up to 30 min)' },
  { key: 'stormDistinctTasks', env: 'STORM_DISTINCT_TASKS', flag: '--storm-distinct-tasks', kind: 'int', def: '8', range: { min: 0, max: 100_000 }, help: 'different tasks failing within 10 s that pause dispatch (0 = breaker off)' },
  { key: 'retentionDays', env: 'RETENTION_DAYS', flag: '--retention-days', kind: 'number', def: '0', range: { min: 0, max: 36_500 }, help: 'prune finished (done, cancelled) tasks with their runs, events and logs once older than this many days, a small batch per tick (0 = off)' },
  { key: 'hostId', env: 'KANBAN_HOST_ID', flag: '--host-id', kind: 'hostId', def: '', shownDefault: '/etc/machine-id', help: `PostgreSQL board: this host's id (${HOST_ID_RULE}); one supervisor per board and host id` },
  { key: 'leaseSeconds', env: 'SUPERVISOR_LEASE_SECONDS', flag: '--lease-seconds', kind: 'number', def: '30', range: { min: 1, max: 86_400 }, help: `PostgreSQL board: lease of this supervisor's row, renewed every tick (at least ${LEASE_MIN_TICKS} ticks)` },
  { key: 'http', env: 'KANBAN_HTTP', flag: '--http', kind: 'http', def: DEFAULT_HTTP, help: 'HTTP server (health, metrics, JSON API, web board): [HOST:]PORT or off; a non-loopback HOST needs KANBAN_HTTP_TOKEN' },
  { key: 'httpToken', env: 'KANBAN_HTTP_TOKEN', flag: '(env only)', kind: 'secret', def: '', envOnly: true, shownDefault: 'generated', help: 'HTTP bearer token (16-256 of A-Z a-z 0-9 . _ ~ + / = -); default: generated at first start, stored 0600 next to the board (loopback only)' },
  { key: 'reportChannel', env: 'REPORT_CHANNEL', flag: '--report-channel', kind: 'onoff', def: 'on', help: 'workers report through a local socket of the supervisor (group commit; no board connection per worker): on or off' },
  { key: 'reportBatchWindowMs', env: 'REPORT_BATCH_WINDOW_MS', flag: '--report-batch-window-ms', kind: 'number', def: '2' /* = BATCH_WINDOW_MS (supervisor/src/channel/batch.ts: why 2) */, range: { min: 0, max: 1000 }, help: 'report channel: how long a report commit waits after the previous one to gather the reports arriving meanwhile (0: at once)' },
  { key: 'reportHeartbeatWindowMs', env: 'REPORT_HEARTBEAT_WINDOW_MS', flag: '--report-heartbeat-window-ms', kind: 'number', def: '5' /* = HEARTBEAT_WINDOW_MS (supervisor/src/channel/batch.ts) */, range: { min: 0, max: 1000 }, help: 'report channel: how long heartbeats alone wait for other reports before their commit (any other report starts it at once; 0: no wait)' },
  { key: 'stateDir', env: 'KANBAN_STATE_DIR', flag: '--state-dir', kind: 'dir', def: '', shownDefault: '~/.local/state/…', help: 'PostgreSQL board: local state folder (run logs, spool, status file); default $XDG_STATE_HOME (or ~/.local/state)/kanban-supervisor/<hash of the masked URL and schema>' },
];

/** The default as `--help` and the README show it. */
export function shownDefault(spec: VarSpec): string {
  return spec.shownDefault ?? spec.def;
}

function parseOne(spec: VarSpec, name: string, raw: string): unknown {
  switch (spec.kind) {
    case 'int':
      return parseIntStrict(name, raw, spec.range!);
    case 'number':
      return parseNumberStrict(name, raw, spec.range!);
    case 'level':
      if (!(LOG_LEVELS as readonly string[]).includes(raw.trim())) {
        throw new ConfigError(`${name} must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(raw)}`);
      }
      return raw.trim();
    case 'format':
      if (!(LOG_FORMATS as readonly string[]).includes(raw.trim())) {
        throw new ConfigError(`${name} must be one of ${LOG_FORMATS.join(', ')}, got ${JSON.stringify(raw)}`);
      }
      return raw.trim();
    case 'string':
      if (raw.trim() === '') throw new ConfigError(`${name} must not be empty`);
      return raw;
    case 'hostId': {
      const id = raw.trim();
      if (id === '' && name === spec.env) return null;
      if (!HOST_ID_PATTERN.test(id)) throw new ConfigError(`${name} must be ${HOST_ID_RULE}, got ${JSON.stringify(raw)}`);
      return id;
    }
    case 'http':
      return parseHttpAddress(name, raw);
    case 'secret':
      if (raw === '' && name === spec.env) return null;
      // The value is never quoted back: it is a secret.
      if (!HTTP_TOKEN_PATTERN.test(raw)) throw new ConfigError(`${name} must be 16-256 characters of A-Z a-z 0-9 . _ ~ + / = - (its value is not shown)`);
      return raw;
    case 'onoff': {
      const t = raw.trim().toLowerCase();
      if (t === 'on') return true;
      if (t === 'off') return false;
      throw new ConfigError(`${name} must be on or off, got ${JSON.stringify(raw)}`);
    }
    case 'dir':
      if (raw.trim() === '') {
        if (name === spec.env) return null;
        throw new ConfigError(`${name} must not be empty`);
      }
      return raw;
  }
}

/** Whether `db` names a PostgreSQL board (the same test as the board's isPgLocation). */
function isPgUrl(db: string): boolean {
  return /^postgres(ql)?:\/\//i.test(db);
}

/**
 * Build the config from `env`, then apply `flags` (keyed by flag name, e.g. `--db`).
 * Unknown keys in `flags` are the caller's business; this only reads known ones.
 */
export function loadConfig(env: Record<string, string | undefined>, flags: Record<string, string | undefined> = {}): SupervisorConfig {
  const out: Record<string, unknown> = {};
  /** Where each value came from, as messages name it: its flag, or its variable (`dflt`: not set). */
  const from: Record<string, { name: string; dflt: boolean }> = {};
  for (const spec of CONFIG_VARS) {
    const fromFlag = spec.envOnly ? undefined : flags[spec.flag];
    const fromEnv = env[spec.env];
    if (fromFlag !== undefined) {
      out[spec.key] = parseOne(spec, spec.flag, fromFlag);
      from[spec.key] = { name: spec.flag, dflt: false };
    } else if (fromEnv !== undefined && fromEnv !== '') {
      out[spec.key] = parseOne(spec, spec.env, fromEnv);
      from[spec.key] = { name: spec.env, dflt: false };
    } else {
      out[spec.key] = parseOne(spec, spec.env, spec.def);
      from[spec.key] = { name: spec.env, dflt: true };
    }
  }
  const cfg = out as unknown as SupervisorConfig;
  cfg.httpExplicit = !from.http!.dflt;
  const said = (key: keyof SupervisorConfig, value: string) => `${from[key]!.name} (${value}${from[key]!.dflt ? ', the default' : ''})`;
  if (cfg.backoffMaxSeconds < cfg.backoffBaseSeconds) {
    throw new ConfigError(
      `BACKOFF_MAX_SECONDS (${cfg.backoffMaxSeconds}) must be at least BACKOFF_BASE_SECONDS (${cfg.backoffBaseSeconds})`,
    );
  }
  // The lease is renewed once per tick: shorter than a few ticks, it would expire between renewals
  // (and other hosts would take this supervisor for dead). It only exists on a PostgreSQL board.
  if (isPgUrl(cfg.db) && cfg.leaseSeconds * 1000 < LEASE_MIN_TICKS * cfg.tickIntervalMs) {
    throw new ConfigError(
      `${said('leaseSeconds', `${cfg.leaseSeconds} s`)} must be at least ${LEASE_MIN_TICKS} times ${said('tickIntervalMs', `${cfg.tickIntervalMs} ms`)}, ` +
        `that is ${(LEASE_MIN_TICKS * cfg.tickIntervalMs) / 1000} s: the lease is renewed once per tick and would expire between renewals`,
    );
  }
  if (cfg.http && !isLoopbackHost(cfg.http.host) && cfg.httpToken === null) {
    throw new ConfigError(
      `${said('http', `${cfg.http.host}:${cfg.http.port}`)} is not a loopback address: set KANBAN_HTTP_TOKEN (every request then needs it), ` +
        'or listen on 127.0.0.1 (the default), or turn the server off with --http off',
    );
  }
  return cfg;
}
