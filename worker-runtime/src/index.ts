/**
 * @kanban-supervisor/worker-runtime: what skills import.
 *
 *   import { runWorker } from '@kanban-supervisor/worker-runtime';
 *   runWorker(async (ctx) => { ...; return result; });
 */
export { runWorker, guardStdio } from './runtime.js';
export {
  WorkerStoppedError,
  DeferRequest,
  type WorkerContext,
  type WorkerHandler,
  type WorkerResult,
  type WorkerTask,
  type RunWorkerOptions,
  type ShutdownHook,
  type StopReason,
} from './api.js';
export { workerCli, WORKER_CLI_USAGE, type CliIo } from './cli.js';
export { EXIT, REQUIRED_VARS, readWorkerEnv, WorkerEnvError, type WorkerEnv } from './env.js';
export {
  openWorkerBoard,
  checkpointAndClose,
  deliverReport,
  WORKER_BUSY_TIMEOUT_MS,
  WORKER_BUSY_RETRIES,
  type Delivery,
  type DeliverOptions,
} from './board-io.js';
export { writeSpool, readSpool, removeSpoolEntry, spoolDir, spoolPath, SPOOL_VERSION, MAX_SPOOL_ENTRY_BYTES, type SpoolEntry, type SpoolRead } from './spool.js';
/** Rejection of ctx.heartbeat/ctx.event (and abort reason of ctx.signal) when the run was fenced out. */
export { NotCurrentError } from '@kanban-supervisor/board/light';
export {
  PROTOCOL_VERSION,
  PROTOCOL_VERSIONS,
  MAX_FRAME_BYTES,
  MAX_ANSWER_BYTES,
  PARENTS_PAGE_BYTES,
  OPS,
  ProtocolError,
  parseRequest,
  requestId,
  reportFields,
  nextSeq,
  type Op,
  type Report,
  type WireRequest,
  type WireAnswer,
  type AnswerCode,
} from './protocol.js';
export { ReportChannel, ChannelDownError, ChannelLateError, CHANNEL_TIMEOUT_MS, CHANNEL_RETRY_MS } from './channel.js';
export { Reporter } from './reporter.js';
