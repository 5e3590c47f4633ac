/**
 * The limit: a plain Node spawn loop running the task `n` times with at most `conc` alive, no record
 * of anything. A process of its own, like the peers' workers (same start, same spawn code).
 */
import { runTask, workerConfig, writeResult } from './task.js';

const cfg = workerConfig();
let started = 0;
let done = 0;
let failed = 0;
const t0 = Date.now();
await new Promise<void>((resolve) => {
  const next = (): void => {
    if (done + failed === cfg.n) return resolve();
    while (started < cfg.n && started - done - failed < cfg.conc) {
      started++;
      void runTask().then((code) => {
        if (code === 0) done++;
        else failed++;
        next();
      });
    }
  };
  next();
});
writeResult(cfg, { t0, t1: Date.now(), done, failed });
