"""kanban_worker: the Python runtime of kanban-supervisor workers (docs/worker-protocol.md).

    from kanban_worker import run_worker

    def handle(ctx):
        ctx.heartbeat({"step": "start"})
        return {"n": len(ctx.task.payload["items"])}

    run_worker(handle)
"""
from ._board import SCHEMA_VERSION, BoardError, DirectBoard, Report
from ._channel import MAX_ANSWER_BYTES, MAX_FRAME_BYTES, PROTOCOL_VERSION, ReportChannel
from ._context import Context, Task
from ._env import (EXIT_FAILED, EXIT_NOT_CURRENT, EXIT_OK, EXIT_SIGINT, EXIT_SIGTERM, EXIT_TEMPFAIL, EXIT_USAGE, WorkerEnv,
                   heartbeat_interval_seconds, read_worker_env, shutdown_budget_seconds)
from ._errors import DeferRequest, InvalidReport, NotCurrent, WorkerEnvError, WorkerStopped
from ._reporter import Reporter, next_seq
from ._runtime import run_worker

__version__ = "0.1.0"
PROTOCOL_VERSIONS = (PROTOCOL_VERSION,)

__all__ = [
    "run_worker", "Context", "Task", "NotCurrent", "InvalidReport", "BoardError", "WorkerStopped", "DeferRequest", "WorkerEnvError",
    "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_NOT_CURRENT", "EXIT_TEMPFAIL", "EXIT_SIGINT", "EXIT_SIGTERM",
    "Reporter", "ReportChannel", "DirectBoard", "Report", "WorkerEnv", "read_worker_env", "next_seq",
    "heartbeat_interval_seconds", "shutdown_budget_seconds", "SCHEMA_VERSION", "PROTOCOL_VERSION", "PROTOCOL_VERSIONS", "MAX_FRAME_BYTES",
    "MAX_ANSWER_BYTES",
]
