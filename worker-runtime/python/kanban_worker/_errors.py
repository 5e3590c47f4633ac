"""The exceptions a skill may see (mirrors worker-runtime/src/api.ts and the board's errors)."""
from __future__ import annotations

from typing import Optional


class NotCurrent(Exception):
    """The run is no longer current (reclaimed, cancelled, ended): nothing was written. The worker exits 3."""

    def __init__(self, run_id: str, task_id: str) -> None:
        super().__init__(f"run {run_id} is no longer current for task {task_id}")
        self.run_id = run_id
        self.task_id = task_id


class InvalidReport(ValueError):
    """The board refused a report's value (a bad event kind, progress or result that is not JSON, ...)."""


class WorkerEnvError(Exception):
    """A missing or invalid KANBAN_* variable: the worker exits 2."""


class WorkerStopped(Exception):
    """The reason given to shutdown hooks when the worker received SIGTERM or SIGINT."""

    def __init__(self, signal: str) -> None:
        super().__init__(f"the worker received {signal} and is stopping")
        self.signal = signal


class DeferRequest(Exception):
    """Raised by ctx.defer(): the run ends deferred (even if the handler swallows it)."""

    def __init__(self, seconds: float, reason: Optional[str] = None) -> None:
        super().__init__(f"deferred for {seconds} s" + (f": {reason}" if reason else ""))
        self.seconds = seconds
        self.reason = reason


class ChannelDown(Exception):
    """The report channel could not deliver a request (or the supervisor could not apply it): write it directly."""


class ChannelLate(ChannelDown):
    """A heartbeat not answered in time on a connection still open (the supervisor alive but busy): that
    heartbeat is dropped, not written directly, and the channel stays up (channel.ts ChannelLateError)."""


class BoardUnavailable(Exception):
    """The board cannot be reached directly (not the worker's fault: damaged, busy, unwritable, PostgreSQL)."""
