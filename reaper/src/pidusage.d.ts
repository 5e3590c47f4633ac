// pidusage 4 ships no types (and @types/pidusage describes version 2): the part the reaper uses.
declare module 'pidusage' {
  function pidusage(pids: number[], options?: pidusage.Options): Promise<Record<string, pidusage.Status | undefined>>;
  namespace pidusage {
    interface Status {
      /** percent of one core since this pid's previous reading (0 on the first reading under /proc) */
      cpu: number;
      /** resident set size, bytes */
      memory: number;
      ppid: number;
      pid: number;
      /** user + system CPU time, ms */
      ctime: number;
      /** ms since the process started */
      elapsed: number;
      /** ms epoch of the reading */
      timestamp: number;
    }
    interface Options {
      /** ms a pid's history (and, under /proc, its open descriptor) is kept after its last reading */
      maxage?: number;
      usePs?: boolean;
    }
    /** forgets every history entry (without closing the descriptors they hold under /proc) */
    function clear(): void;
  }
  export = pidusage;
}
