/**
 * Step: account. Where the failure counter is committed.
 *
 * First what the supervisor holds for the board goes into the tick's transaction (spawn records,
 * then exits and crash verdicts: TickTx.writeHeld). Then every run that ended and whose processes
 * are gone gets its task's decision (policies' decideAccounting: done, requeue with backoff and
 * the counter, block at the failure limit, or leave), all applied in one write
 * (applyAccountingBatch). They are committed with the tick's transaction: by the dispatch step
 * together with its claims, before its first spawn (or at the tick's end), so a task is never
 * spawned again before its counter is on the board.
 * A lost transaction leaves the counter unchanged: the runs stay unaccounted and the next run of
 * this step applies their decisions once.
 *
 * Exit-code skills' runs are ended here too: their exit reports (held by reap) are settled with the
 * end of their logs (exit-skills.ts) and written with the other exits, fenced, then accounted in
 * the same transaction.
 *
 * The tick runs this step only after the spool step succeeded. It also runs once more, in a
 * transaction of its own, when a stopping supervisor's last worker is gone.
 */
import type { Run, Task } from '@kanban-supervisor/board';
import { accountInput, countsAsFailure, decideAccounting, recordFailure, recordSuccess, DEFAULT_STORM, type AccountingDecision } from '@kanban-supervisor/policies';
import { settleExitReports } from '../exit-skills.js';
import type { TickContext } from '../state.js';
import { writeStatusFile } from '../status-file.js';
import type { TickTx } from '../tick-tx.js';

export async function account(ctx: TickContext, tx: TickTx, now: number): Promise<void> {
  const { cfg, log, state: s } = ctx;
  // Exit-code skills: the log ends their reports need are read now, before they are written.
  settleExitReports(ctx);
  await tx.writeHeld();
  const pending = await tx.unaccountedRuns();
  if (pending.length === 0) return;
  const policy = {
    failureLimit: cfg.failureLimit,
    backoff: { baseSeconds: cfg.backoffBaseSeconds, factor: cfg.backoffFactor, maxSeconds: cfg.backoffMaxSeconds },
  };
  const decided = pending.map(({ run, task }) => ({
    run,
    task,
    decision: decideAccounting(accountInput(run, task, now, Math.random()), policy),
  }));
  // One write for every run ended since the last tick: counters and backoff commit together.
  await tx.applyAccountingBatch(
    decided.map(({ run, decision }) => ({ runId: run.id, action: decision })),
    now,
  );
  // The storm breaker counts distinct failing tasks (a run counted again after a rolled-back tick
  // changes nothing); the log lines wait for the commit.
  for (const { run, task } of decided) {
    if (run.outcome && countsAsFailure(run.outcome) && cfg.stormDistinctTasks > 0) {
      const r = recordFailure(s.storm, task.id, now, { ...DEFAULT_STORM, distinctTasks: cfg.stormDistinctTasks });
      s.storm = r.state;
      if (r.tripped) {
        log.error({ event: 'storm_pause', until: s.storm.pausedUntil, trips: s.storm.trips }, 'many different tasks are failing: pausing dispatch');
        writeStatusFile(ctx); // `status` shows the pause and its reason
      }
    } else if (run.outcome === 'completed') {
      s.storm = recordSuccess(s.storm);
    }
  }
  tx.logCommitted(() => {
    logAccounting(ctx, decided);
    ctx.metrics.runsAccounted(decided.map(({ run, task }) => ({ outcome: run.outcome, skill: task.skill })));
  });
}

function logAccounting(ctx: TickContext, decided: Array<{ run: Run; task: Task; decision: AccountingDecision }>): void {
  const { log } = ctx;
  for (const { run, task, decision } of decided) {
    const fields = { task: task.id, run: run.id, workerPid: run.pid, outcome: run.outcome };
    switch (decision.action) {
      case 'done':
        log.info({ event: 'task_done', ...fields }, 'task done');
        break;
      case 'requeue':
        log.info({ event: 'task_requeued', ...fields, consecutiveFailures: decision.consecutiveFailures, notBefore: decision.notBefore, counted: decision.counted, error: run.error }, 'task requeued');
        break;
      case 'block':
        log.warn({ event: 'task_blocked', ...fields, reason: decision.reason }, 'task blocked');
        break;
      case 'leave':
        log.info({ event: 'run_accounted', ...fields, taskStatus: task.status }, 'run ended');
        break;
    }
  }
}
