"""What a skill's handler works with (mirrors worker-runtime/src/api.ts WorkerContext)."""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, List, Mapping, NoReturn, Optional

from ._board import MAX_DEFER_MS
from ._errors import DeferRequest

if TYPE_CHECKING:
    from ._runtime import _Worker

ShutdownHook = Callable[[BaseException], Any]


@dataclass(frozen=True)
class Task:
    id: str
    title: str
    skill: str
    payload: Any


class Context:
    """The handler's view of its run: task, parents, heartbeat, event, defer, cancellation, shutdown hooks."""

    def __init__(self, worker: "_Worker", task: Task, parents: Mapping[str, Any], run_id: str) -> None:
        self._w = worker
        self.task = task
        #: The results of the task's parents (task graph: `add --after`), by task id; empty without parents.
        self.parents: Mapping[str, Any] = dict(parents)
        self.run_id = run_id
        #: Set on SIGTERM/SIGINT, or when the run was fenced out (see stop_reason).
        self.cancelled = threading.Event()
        #: Why: WorkerStopped (a signal) or NotCurrent (fenced out); None while running.
        self.stop_reason: Optional[BaseException] = None
        self._callbacks: List[Callable[[], None]] = []
        self._cb_lock = threading.Lock()
        self.defer_request: Optional[DeferRequest] = None

    @property
    def is_cancelled(self) -> bool:
        return self.cancelled.is_set()

    def heartbeat(self, progress: Any = None) -> None:
        """Record a heartbeat (progress: any JSON value, kept on the run). Raises NotCurrent when fenced out and
        InvalidReport for progress that is not JSON; a heartbeat the board cannot take is said on stderr, never raised."""
        self._w.heartbeat(progress, progress is not None)

    def event(self, kind: str, data: Any = None) -> None:
        """Append an event to the task's history. Raises NotCurrent when fenced out."""
        self._w.event(kind, data)

    def defer(self, seconds: float, reason: Optional[str] = None) -> NoReturn:
        """End the run deferred: the task is ready again `seconds` later. Raises DeferRequest (the run ends deferred even if it is caught)."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"ctx.defer needs a non-negative number of seconds, got {seconds!r}")
        if seconds * 1000 > MAX_DEFER_MS:
            raise ValueError(f"ctx.defer: {seconds!r} seconds is longer than the board can hold (at most {MAX_DEFER_MS // 1000} s)")
        if self.defer_request is None:
            self.defer_request = DeferRequest(seconds, reason)
        raise self.defer_request

    def on_shutdown(self, hook: ShutdownHook) -> None:
        """Run `hook(reason)` when the worker stops before its handler finished (SIGTERM/SIGINT, or fenced out).
        Hooks run concurrently within the shutdown budget; an async hook is run to completion; a second signal skips them."""
        if not callable(hook):
            raise TypeError("on_shutdown needs a function")
        self._w.hooks.append(hook)

    def sleep(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking early when cancelled; returns whether the run is cancelled."""
        return self.cancelled.wait(seconds)

    async def wait_cancelled(self) -> Optional[BaseException]:
        """asyncio: wait until the run is cancelled; returns the stop reason."""
        import asyncio  # here, not at the top: most handlers are not coroutines (start-up cost)

        loop = asyncio.get_running_loop()
        fut: "asyncio.Future[None]" = loop.create_future()

        def fire() -> None:
            if not fut.done():
                fut.set_result(None)

        with self._cb_lock:
            if not self.cancelled.is_set():
                self._callbacks.append(lambda: loop.call_soon_threadsafe(fire))
            else:
                fire()
        await fut
        return self.stop_reason

    def _cancel(self, reason: BaseException) -> None:
        with self._cb_lock:
            if self.cancelled.is_set():
                return
            self.stop_reason = reason
            self.cancelled.set()
            cbs, self._callbacks = self._callbacks, []
        for cb in cbs:
            try:
                cb()
            except RuntimeError:
                pass  # its event loop is closed
