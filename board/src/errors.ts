/** Typed errors of the board store. Every message names the board path or the row at fault. */
import { EXIT } from '@kanban-supervisor/policies';

export class BoardError extends Error {
  override name = 'BoardError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** A worker write whose run is no longer current (reclaimed, cancelled, ended, wrong token). */
export class NotCurrentError extends BoardError {
  override name = 'NotCurrentError';
  constructor(readonly runId: string, readonly taskId: string) {
    super(`run ${runId} is no longer current for task ${taskId}`);
  }
}

/** The board file is damaged (not a database, malformed, failing quick_check). */
export class BoardDamagedError extends BoardError {
  override name = 'BoardDamagedError';
  constructor(readonly path: string, readonly detail: string, options?: { cause?: unknown }) {
    super(`board ${path} is damaged: ${detail}`, options);
  }
}

/** The board was written by a newer schema than this build knows. */
export class SchemaTooNewError extends BoardError {
  override name = 'SchemaTooNewError';
  constructor(readonly path: string, readonly found: number, readonly supported: number) {
    super(
      `board ${path} has schema version ${found}, newer than this kanban-supervisor supports (${supported}); upgrade kanban-supervisor`,
    );
  }
}

/** WAL could not be enabled (network filesystem, unsupported locking). Never silently degraded. */
export class WalUnavailableError extends BoardError {
  override name = 'WalUnavailableError';
  constructor(readonly path: string, detail: string, options?: { cause?: unknown }) {
    super(`board ${path}: cannot use WAL journal mode (${detail}); refusing to open it in any other journal mode`, options);
  }
}

/** A caller-side mistake: unknown task, unknown skill, invalid JSON, invalid state change. */
export class BoardInputError extends BoardError {
  override name = 'BoardInputError';
}

/**
 * A BoardInputError about the input alone, whatever the board holds (validate.ts: a name, a
 * range, a size, a shape): bad input, exit status 2 in the CLI, as its own checks of the same
 * things. A refusal that depends on the board's contents (an unknown task or skill, a change the
 * task's status refuses, a cycle) stays a plain BoardInputError: the operation failed, exit 1.
 */
export class BoardValidationError extends BoardInputError {
  override name = 'BoardValidationError';
}

/**
 * The board path itself is wrong (a directory, a missing folder, a board file with several hard
 * links, not writable by this user): a configuration error, exit status 2 in the CLI.
 */
export class BoardPathError extends BoardError {
  override name = 'BoardPathError';
  readonly exitCode = EXIT.usage;
  constructor(readonly path: string, readonly detail: string, options?: { cause?: unknown }) {
    super(`board ${path} ${detail}`, options);
  }
}

/**
 * The path holds no board: an empty file, or a SQLite database without the board's schema, where
 * the command may not create one (exit 2 in the CLI). For a worker it is the board's fault, not its
 * own (classifyError: damaged): its board was truncated or replaced under it.
 */
export class NotABoardError extends BoardPathError {
  override name = 'NotABoardError';
}

/**
 * The board is in use by a supervisor (a live owner, a held host lock, an unexpired lease): an
 * operation that needs it idle is refused, naming the owner. Exit status 4 in the CLI.
 */
export class BoardOwnedError extends BoardError {
  override name = 'BoardOwnedError';
  readonly exitCode = EXIT.boardOwned;
  constructor(readonly path: string, readonly owner: string, options?: { cause?: unknown }) {
    super(`board ${path} is owned by ${owner}`, options);
  }
}

/**
 * The writes of a group (one transaction for a supervisor tick) did not land: the commit failed,
 * or SQLite rolled the whole transaction back under an earlier write. Nothing of the group is on
 * the board; `cause` is the SQLite error, and classifies this error.
 */
export class WriteGroupLostError extends BoardError {
  override name = 'WriteGroupLostError';
  constructor(readonly path: string, cause: unknown) {
    super(`board ${path}: the writes of this group were rolled back (${(cause as Error)?.message ?? String(cause)})`, { cause });
  }
}

/**
 * busy: contention. damaged: the file is not a sound database. io: an I/O failure, transient until
 * a check confirms damage. access: this process may not open or write the board (permissions, a
 * read-only file or filesystem): never damage, never a reason to quarantine or back up. other: the rest.
 */
export type ErrorClass = 'busy' | 'damaged' | 'io' | 'access' | 'other';

/** errno codes (from `fs` or the OS) that mean "not allowed", not "broken". */
const ACCESS_ERRNO = new Set(['EACCES', 'EPERM', 'EROFS']);

interface SqliteLikeError {
  code?: unknown;
  message?: unknown;
  /** Set on a PostgreSQL server error (pg's DatabaseError), whose `code` is its SQLSTATE. */
  severity?: unknown;
}

/** Socket errno codes of a connection to a database server: transient (io), never damage. */
const CONNECTION_ERRNO = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNABORTED']);

/** What the pg driver says, without a code, when its connection is gone or never came. */
const PG_CONNECTION_LOST = /Connection terminated|connection error and is not queryable|timeout exceeded when trying to connect|Client was closed and is not queryable|Connection closed/i;

/**
 * Classify a PostgreSQL server error by its SQLSTATE: serialization failures, deadlocks, lock and
 * statement timeouts are contention (busy); connection exceptions, shutdowns and exhausted
 * resources (too many connections, disk full) are transient (io); authentication and privilege
 * errors are access. A PostgreSQL board is never "damaged" from the client's side.
 */
function classifySqlState(code: string): ErrorClass {
  if (code === '40001' || code === '40P01' || code === '55P03' || code === '57014') return 'busy';
  if (code.startsWith('08') || code.startsWith('53') || code.startsWith('57P') || code.startsWith('58')) return 'io';
  if (code.startsWith('28') || code === '42501') return 'access';
  return 'other';
}

/**
 * Classify an error from SQLite: BUSY/LOCKED are contention, never damage; CORRUPT/NOTADB are
 * damage; IOERR is transient until a header check and quick_check confirm damage; READONLY/PERM/AUTH
 * and EACCES/EPERM/EROFS (from the header check through `fs`) are access, never damage.
 * From PostgreSQL (classifySqlState) and its connection: busy, io, access or other, never damage.
 */
export function classifyError(err: unknown): ErrorClass {
  if (err instanceof BoardDamagedError || err instanceof NotABoardError) return 'damaged';
  if (err instanceof WriteGroupLostError) return classifyError(err.cause);
  // A path refused because of the errno it met (EACCES …) is classified by that errno.
  if (err instanceof BoardPathError && err.cause !== undefined) return classifyError(err.cause);
  const e = err as SqliteLikeError | null;
  const code = typeof e?.code === 'string' ? e.code : '';
  if (typeof e?.severity === 'string' && /^[0-9A-Z]{5}$/.test(code)) return classifySqlState(code);
  if (CONNECTION_ERRNO.has(code)) return 'io';
  if (code === '' && typeof e?.message === 'string' && PG_CONNECTION_LOST.test(e.message)) return 'io';
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) return 'busy';
  if (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB') return 'damaged';
  if (code.startsWith('SQLITE_IOERR') || code === 'SQLITE_CANTOPEN' || code === 'SQLITE_FULL') return 'io';
  if (code.startsWith('SQLITE_READONLY') || code === 'SQLITE_PERM' || code === 'SQLITE_AUTH' || ACCESS_ERRNO.has(code)) return 'access';
  return 'other';
}

export function isBusy(err: unknown): boolean {
  return classifyError(err) === 'busy';
}

/**
 * How a failure to open a PostgreSQL board (connect, then create or migrate its schema) is met at
 * a supervisor's start. Pure: decided from the error alone.
 * - transient: the server is not there yet, or not now (refused, reset, timed out, unreachable, a
 *   name that does not resolve yet, 08xxx connection exceptions, 53xxx too many connections or out of
 *   resources, 57P01-57P03 shutting down / starting up, contention): retried with backoff.
 * - config: what waiting will not fix and the operator must: a URL that does not parse or names a
 *   bad schema (BoardPathError), authentication (28xxx), an unknown database (3D000), a missing
 *   privilege (42501), a password or TLS setting the driver refuses; exit 2.
 * - fatal: anything else, a schema newer than this build among them; the error as it is.
 */
export type StartFailure = 'transient' | 'config' | 'fatal';

/** Driver errors without a SQLSTATE that are the operator's to fix (password, TLS). */
const PG_CONFIG_MESSAGE = /\bSASL\b|client password must be|password authentication|does not support SSL|self[- ]signed certificate|certificate/i;
const TLS_CODE = /^(ERR_TLS_|ERR_SSL_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_(GET|VERIFY)_|CERT_)/;

export function classifyStartFailure(err: unknown): StartFailure {
  if (err instanceof SchemaTooNewError) return 'fatal';
  if (err instanceof BoardPathError) return 'config';
  if (err instanceof WriteGroupLostError) return classifyStartFailure(err.cause);
  const e = err as SqliteLikeError | null;
  const code = typeof e?.code === 'string' ? e.code : '';
  if (typeof e?.severity === 'string' && /^[0-9A-Z]{5}$/.test(code)) {
    if (code.startsWith('08') || code.startsWith('53') || ['57P01', '57P02', '57P03'].includes(code)) return 'transient';
    if (classifySqlState(code) === 'busy') return 'transient';
    if (code.startsWith('28') || code === '3D000' || code === '42501') return 'config';
    return 'fatal';
  }
  if (CONNECTION_ERRNO.has(code)) return 'transient';
  if (ACCESS_ERRNO.has(code) || TLS_CODE.test(code)) return 'config';
  const message = typeof e?.message === 'string' ? e.message : '';
  if (code === '' && PG_CONNECTION_LOST.test(message)) return 'transient';
  if (PG_CONFIG_MESSAGE.test(message)) return 'config';
  return 'fatal';
}
