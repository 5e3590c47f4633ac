// @kanban-supervisor/reaper: all OS process work of the supervisor (identity, groups,
// termination, orphans/zombies, resource sampling). Linux first; see README.md.
export {
  type ProcessIdentity,
  type ProcStat,
  readStat,
  bootId,
  identify,
  alive,
  groupProcesses,
  isGone,
  processTable,
} from './identity.js';
export { resolveExecutable, lookupExecutable, DEFAULT_PATH } from './exec.js';
export {
  Reaper,
  type SpawnRequest,
  type SpawnResult,
  type SpawnFault,
  type ExitRecord,
  type TerminationState,
  type Usage,
  type ReaperLogger,
  type ReaperOptions,
} from './reaper.js';
export { openFdCount, IS_LINUX as procSupported, psProcessTable, ProcessTableError } from './platform.js';
export { FALLBACK_ENV, ReaperConfigError, fallbackForced, type ProcBackend, type PortableSamplerOptions } from './fallback.js';
export { runHelper, runHelperSync, type HelperOptions, type HelperResult } from './helper.js';
export { zombieChildren } from './zombies.js';
export { findByEnv, findAllByEnv, scanEnv, childPids, groupEmpty } from './find.js';
export {
  UnsafeFileError,
  type UnsafeReason,
  type SafeOpenOptions,
  assertSafeStat,
  openSafe,
  readFileBounded,
  isOwnDirectory,
  fsyncDirectory,
  writeFileAtomic,
  type AtomicWriteOptions,
  LOG_MARKER_PREFIX,
  LOG_MARKER_RE,
  LOG_MARKER_CUTTING,
  parseLogMarker,
  type LogMarkerLine,
  readAt,
  readTailSafe,
  boundLogFd,
  boundLogFile,
  openLogForBounding,
  type LogBoundOptions,
  type LogBoundResult,
} from './safe-fs.js';
export { watchFd, type FdWatch } from './fd-watch.js';
export { peerUidOf, peerUidSupported } from './native.js';
export { sdNotify, SystemdNotifier, STATUS_MIN_INTERVAL_MS, type SdNotifyResult, type NotifierOptions } from './notify.js';
