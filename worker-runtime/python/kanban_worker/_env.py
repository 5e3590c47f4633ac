"""The KANBAN_* environment a worker gets (mirrors worker-runtime/src/env.ts) and the timing rules
the runtime derives from it (mirrors policies/src/decisions.ts: heartbeatIntervalMs, shutdownBudgetMs)."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Mapping, Optional

from ._errors import WorkerEnvError

REQUIRED_VARS = ("KANBAN_DB", "KANBAN_TASK_ID", "KANBAN_RUN_ID", "KANBAN_RUN_TOKEN")

# Exit statuses (policies/src/reasons.ts EXIT).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_CURRENT = 3
EXIT_TEMPFAIL = 75
EXIT_SIGINT = 130
EXIT_SIGTERM = 143

DEFAULT_GRACE_SECONDS = 30.0
# LIMITS in policies: reclaimGraceSeconds and heartbeatTimeoutSeconds.
_GRACE_RANGE = (0.0, 86_400.0)
_HB_TIMEOUT_RANGE = (0.0, 365 * 86_400.0)


@dataclass(frozen=True)
class Credentials:
    task_id: str
    run_id: str
    token: str


@dataclass(frozen=True)
class WorkerEnv:
    db: str
    spool_dir: str
    cred: Credentials
    reclaim_grace_seconds: float
    heartbeat_timeout_seconds: float
    socket_path: Optional[str]
    # KANBAN_HEARTBEAT_SLOT: the run's heartbeat slot (policies beat-slot.ts); None: every beat is a report.
    heartbeat_slot: Optional[str] = None

    @property
    def is_postgres(self) -> bool:
        return is_pg_location(self.db)


def is_pg_location(db: str) -> bool:
    return db.startswith("postgres://") or db.startswith("postgresql://")


def _limit(env: Mapping[str, str], name: str, rng: "tuple[float, float]", fallback: float) -> float:
    raw = env.get(name, "").strip()
    if raw == "":
        return fallback
    try:
        v = float(raw)
    except ValueError:
        raise WorkerEnvError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not math.isfinite(v) or v < rng[0] or v > rng[1]:
        raise WorkerEnvError(f"{name} must be between {rng[0]:g} and {rng[1]:g} seconds, got {raw!r}")
    return v


def read_worker_env(env: Optional[Mapping[str, str]] = None) -> WorkerEnv:
    """Read and check the KANBAN_* variables; raises WorkerEnvError naming every missing one."""
    e = os.environ if env is None else env
    missing = [k for k in REQUIRED_VARS if e.get(k, "").strip() == ""]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise WorkerEnvError(
            f"{', '.join(missing)} {verb} not set: this program runs as a kanban-supervisor worker, which gets "
            "KANBAN_DB, KANBAN_TASK_ID, KANBAN_RUN_ID and KANBAN_RUN_TOKEN from the supervisor that spawned it"
        )
    raw_db = e["KANBAN_DB"].strip()
    db = raw_db if is_pg_location(raw_db) else os.path.abspath(e["KANBAN_DB"])
    sock = e.get("KANBAN_SOCKET", "").strip()
    if sock and not os.path.isabs(sock):
        raise WorkerEnvError(f"KANBAN_SOCKET must be an absolute path, got {sock!r}")
    slot = e.get("KANBAN_HEARTBEAT_SLOT", "").strip()
    if slot and not os.path.isabs(slot):
        raise WorkerEnvError(f"KANBAN_HEARTBEAT_SLOT must be an absolute path, got {slot!r}")
    spool = e.get("KANBAN_SPOOL_DIR", "").strip()
    if spool:
        spool_dir = os.path.abspath(spool)
    elif is_pg_location(db):
        raise WorkerEnvError("KANBAN_SPOOL_DIR is not set: a worker of a PostgreSQL board gets it from its supervisor")
    else:
        spool_dir = os.path.join(os.path.dirname(db), "spool")
    return WorkerEnv(
        db=db,
        spool_dir=spool_dir,
        cred=Credentials(e["KANBAN_TASK_ID"].strip(), e["KANBAN_RUN_ID"].strip(), e["KANBAN_RUN_TOKEN"].strip()),
        reclaim_grace_seconds=_limit(e, "KANBAN_RECLAIM_GRACE_SECONDS", _GRACE_RANGE, DEFAULT_GRACE_SECONDS),
        heartbeat_timeout_seconds=_limit(e, "KANBAN_HEARTBEAT_TIMEOUT_SECONDS", _HB_TIMEOUT_RANGE, 0.0),
        socket_path=sock or None,
        heartbeat_slot=slot or None,
    )


def heartbeat_interval_seconds(heartbeat_timeout_seconds: float) -> float:
    """policies heartbeatIntervalMs: a third of the timeout, 0.1-30 s; 30 s without a timeout."""
    if heartbeat_timeout_seconds <= 0:
        return 30.0
    return max(100, min(30_000, math.floor(heartbeat_timeout_seconds * 1000 / 3))) / 1000


def shutdown_budget_seconds(grace_seconds: float) -> float:
    """policies shutdownBudgetMs: the grace minus a margin of a quarter of it (0.25-5 s)."""
    grace = max(0.0, grace_seconds * 1000)
    margin = min(5000.0, max(250.0, grace / 4))
    return max(0, math.floor(grace - margin)) / 1000


FENCED_SIGNAL_WAIT_SECONDS = 1.5
