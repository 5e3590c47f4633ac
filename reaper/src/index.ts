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
  type ExitRecord,
  type TerminationState,
  type Usage,
  type ReaperLogger,
  type ReaperOptions,
} from './reaper.js';
export { openFdCount, IS_LINUX as procSupported } from './platform.js';
export { zombieChildren } from './zombies.js';
export { findByEnv, childPids, groupEmpty } from './find.js';
