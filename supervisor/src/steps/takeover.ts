/**
 * Step: takeover (shared boards). A supervisor of another host whose lease expired (SIGKILLed with
 * its host, partitioned, SIGSTOPped) is taken over by whichever live supervisor looks first, in
 * this tick's transaction: its runs' fences are closed (their workers' late writes are refused,
 * exit 3, or rejected from the spool), its tasks requeued as `abandoned` (not counted; a run that
 * had reported gets its decision as usual), and its row marked stopped. The requeue waits
 * policies' takeoverRequeueDelayMs: the time a fenced worker still running on the lost host needs
 * to notice (its next heartbeat) and stop by itself, so a task never has two live workers.
 *
 * Nothing here touches a process: the runs' processes belong to their own host. Its supervisor,
 * if it comes back, finds its lease lost and its runs fenced (stop reason lease_lost) and
 * terminates them (steps/reclaim.ts). The step runs only after this supervisor's own lease was
 * renewed in the same transaction: a supervisor that lost its own lease takes nobody over.
 */
import { accountInput, decideAccounting, heartbeatTimeoutFor, takeoverRequeueDelayMs } from '@kanban-supervisor/policies';
import type { TickContext } from '../state.js';
import type { TickTx } from '../tick-tx.js';

export async function takeover(ctx: TickContext, tx: TickTx, now: number): Promise<void> {
  const { cfg, log } = ctx;
  const policy = {
    failureLimit: cfg.failureLimit,
    backoff: { baseSeconds: cfg.backoffBaseSeconds, factor: cfg.backoffFactor, maxSeconds: cfg.backoffMaxSeconds },
  };
  const taken = await tx.takeOverExpired(
    now,
    (run, task) => decideAccounting(accountInput(run, task, now, Math.random()), policy),
    (run) =>
      now +
      takeoverRequeueDelayMs(
        heartbeatTimeoutFor(run.skillReport, run.skillHeartbeatTimeoutSeconds, cfg.heartbeatTimeoutSeconds),
        run.skillReclaimGraceSeconds ?? cfg.reclaimGraceSeconds,
      ),
  );
  if (!taken || taken.length === 0) return;
  tx.logCommitted(() => {
    for (const sup of taken) {
      log.warn(
        { event: 'lease_takeover', supervisorId: sup.id, hostId: sup.hostId, host: sup.host, supervisorPid: sup.pid, leaseExpiredAt: sup.leaseExpiresAt, runs: sup.runs.length },
        `took over supervisor ${sup.id} (host id ${sup.hostId}): its lease expired; ${sup.runs.length} run(s) fenced`,
      );
      for (const r of sup.runs) {
        const a = r.action;
        log.warn(
          {
            event: 'run_taken_over',
            task: r.taskId,
            run: r.runId,
            workerPid: r.pid,
            hostId: sup.hostId,
            outcome: r.outcome,
            action: a.action,
            ...(a.action === 'requeue' ? { notBefore: a.notBefore, counted: a.counted } : {}),
          },
          `run fenced (its supervisor lost its lease): task ${a.action === 'requeue' ? 'requeued' : a.action}`,
        );
      }
    }
  });
}
