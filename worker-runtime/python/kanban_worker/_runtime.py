"""run_worker: the process-level runtime a Python skill runs under (mirrors worker-runtime/src/runtime.ts).

read KANBAN_* -> load the run (fenced) -> run the handler (in a thread) with automatic heartbeats ->
one final fenced report -> exit. The main thread only waits and owns the signals: on SIGTERM
(SIGINT) it cancels the handler, runs the shutdown hooks within the budget, waits for the report in
flight, records the stop, and exits 143 (130) within the grace.
Exit statuses: 0 completed, 1 failed, 2 bad environment, 3 fenced out, 75 deferred, 143 SIGTERM, 130 SIGINT.
"""
from __future__ import annotations

import inspect
import os
import signal
import stat
import struct
import sys
import threading
import time
import traceback
from typing import Any, Callable, List, NoReturn, Optional

from . import _env as E
from ._board import BoardError, Report
from ._context import Context, ShutdownHook, Task
from ._errors import DeferRequest, InvalidReport, NotCurrent, WorkerEnvError, WorkerStopped
from ._reporter import Reporter

# runtime.ts BOARD_UNAVAILABLE_DEFER_SECONDS
BOARD_UNAVAILABLE_DEFER_SECONDS = 5
# policies SLOT_ACK_WAIT_MS: how long a beat put in the heartbeat slot only waits for its acknowledgement.
SLOT_ACK_WAIT_S = 1.0

Handler = Callable[[Context], Any]


def say(line: str) -> None:
    """A line on stderr; never raises (the reader may be gone)."""
    try:
        sys.stderr.write(line if line.endswith("\n") else line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _message(e: BaseException) -> str:
    return str(e) or type(e).__name__


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    """Call fn; an async function (or a returned coroutine) is run to completion in this thread."""
    out = fn(*args)
    if inspect.iscoroutine(out):
        import asyncio  # only for a coroutine handler (start-up cost)

        return asyncio.run(out)
    return out


_started = False


def run_worker(handler: Handler, *, auto_heartbeat: bool = True, heartbeat_interval: Optional[float] = None) -> NoReturn:
    """Run `handler(ctx)` as this process's worker; never returns (the process exits with the run's status).
    Call it from the main thread, once per process."""
    global _started
    if _started:
        raise RuntimeError("run_worker was already called in this process")
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("run_worker must be called from the main thread (it handles SIGTERM)")
    _started = True
    _Worker(handler, auto_heartbeat, heartbeat_interval).start()
    raise AssertionError("unreachable")


class _Worker:
    def __init__(self, handler: Handler, auto_heartbeat: bool, heartbeat_interval: Optional[float]) -> None:
        self.handler = handler
        self.auto_heartbeat = auto_heartbeat
        self.hb_interval = heartbeat_interval
        self.env: Optional[E.WorkerEnv] = None
        self.reporter: Optional[Reporter] = None
        self.ctx: Optional[Context] = None
        self.hooks: List[ShutdownHook] = []
        self.fenced: Optional[NotCurrent] = None
        self.signal: Optional[str] = None
        self.exit_code: Optional[int] = None
        self.exiting = False
        self._hook_threads: Optional[List[threading.Thread]] = None
        self._wake = threading.Event()
        self._signalled = threading.Event()
        self._signal_at = 0.0
        self._skip = threading.Event()
        self._hb_stop = threading.Event()
        self._slot: Optional[_Slot] = None
        self._last_beat = 0.0
        self._hb_failing = False
        self._hb_warned = False
        self._exit_lock = threading.RLock()

    # ------------------------------------------------------------ the main thread

    def start(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # bound to the run, not to a terminal
        threading.Thread(target=self._run_guarded, name="kanban-worker", daemon=True).start()
        while True:
            self._wake.wait(1.0)
            self._wake.clear()
            if self.signal is not None:
                self._shutdown(self.signal)
            if self.exit_code is not None:
                self._exit(self.exit_code)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self.exiting:
            return
        if self.signal is not None:
            self._skip.set()  # a second signal: skip the hooks and any wait
            return
        self.signal = "SIGINT" if signum == signal.SIGINT else "SIGTERM"
        self._signal_at = time.monotonic()  # the grace counts from here
        self._signalled.set()
        self._wake.set()

    def _shutdown(self, sig: str) -> None:
        code = E.EXIT_SIGINT if sig == "SIGINT" else E.EXIT_SIGTERM
        t0 = self._signal_at or time.monotonic()
        self._hb_stop.set()
        if self.ctx is not None:
            self.ctx._cancel(WorkerStopped(sig))
        env, reporter = self.env, self.reporter
        if env is None or reporter is None:
            self._exit(code)
        assert env is not None and reporter is not None
        grace = env.reclaim_grace_seconds
        self._run_hooks(t0 + E.shutdown_budget_seconds(grace))
        # Record the stop within what is left of the grace (keep ~100 ms to close the board),
        # after the reports on their way (reporter.stop waits for them).
        left = max(0.05, grace - (time.monotonic() - t0) - 0.1)
        deadline = time.monotonic() + left
        reporter.set_deadline(deadline)

        def stop() -> None:
            try:
                reporter.stop(sig, deadline)
            except NotCurrent:
                pass
            except Exception as e:  # noqa: BLE001
                say(f"kanban worker: could not record the stop: {_message(e)}")
        self._bounded(stop, deadline)
        # Closing waits for a write still in flight only until the stop's deadline (~100 ms left to exit):
        # a connection left open is ended by the exit (SQLite recovers from it as from a crash).
        self._exit(code, deadline)

    def _bounded(self, fn: Callable[[], None], deadline: float) -> None:
        """Run fn in a thread; return when it is done, at the deadline, or on a second signal."""
        t = threading.Thread(target=fn, daemon=True)
        t.start()
        while t.is_alive() and time.monotonic() < deadline and not self._skip.is_set():
            t.join(min(0.05, max(0.0, deadline - time.monotonic())))

    def _run_hooks(self, deadline: float) -> None:
        """Start the hooks once (each in a thread); every caller waits for them until its deadline."""
        with self._exit_lock:
            if self._hook_threads is None:
                reason = self.ctx.stop_reason if self.ctx is not None and self.ctx.stop_reason is not None else WorkerStopped(self.signal or "SIGTERM")
                self._hook_threads = []
                for h in self.hooks[:]:
                    def one(h: ShutdownHook = h) -> None:
                        try:
                            _call(h, reason)
                        except Exception as e:  # noqa: BLE001
                            say(f"kanban worker: a shutdown hook failed: {_message(e)}")
                    t = threading.Thread(target=one, daemon=True)
                    t.start()
                    self._hook_threads.append(t)
        for t in self._hook_threads:
            while t.is_alive() and time.monotonic() < deadline and not self._skip.is_set():
                t.join(min(0.05, max(0.0, deadline - time.monotonic())))

    def _exit(self, code: int, until: Optional[float] = None) -> None:
        with self._exit_lock:
            self.exiting = True
            self._hb_stop.set()
            if self.reporter is not None:
                self.reporter.close(until)
            for s in (sys.stdout, sys.stderr):
                try:
                    s.flush()
                except (OSError, ValueError):
                    pass
            os._exit(code)

    # ------------------------------------------------------------ the run thread

    def _done(self, code: int) -> None:
        if self.exit_code is None:
            self.exit_code = code
        self._wake.set()

    def _run_guarded(self) -> None:
        try:
            self._run()
        except BaseException as e:  # noqa: BLE001
            say(f"kanban worker: internal error: {''.join(traceback.format_exception(type(e), e, e.__traceback__))}")
            self._done(E.EXIT_FAILED)

    def _run(self) -> None:
        try:
            env = self.env = E.read_worker_env()
        except WorkerEnvError as e:
            say(f"kanban worker: {e}")
            return self._done(E.EXIT_USAGE)
        reporter = self.reporter = Reporter(env)
        try:
            task, parents = reporter.load_task_and_parents()
        except NotCurrent as e:
            say(str(e))
            return self._done(E.EXIT_NOT_CURRENT)
        except RecursionError:
            # JSON nested deeper than Python's json module parses (~1,000 levels; the board takes it):
            # this worker cannot be given its task. Said, and recorded as the run's failure.
            return self._fail_unloadable("the task's payload or a parent's result is nested deeper than Python's json module can parse (about 1,000 levels)")
        except BoardError as e:
            if self.signal:
                return
            if reporter.board is None:
                say(f"kanban worker: cannot open board {env.db}: {e}")
                return self._defer_unavailable(e, f"the board {env.db} could not be opened")
            say(f"kanban worker: cannot load run {env.cred.run_id} of task {env.cred.task_id}: {e}")
            return self._defer_unavailable(e, f"run {env.cred.run_id} could not be read from the board {env.db}")
        if self.signal:
            return
        ctx = self.ctx = Context(self, Task(task["id"], task["title"], task["skill"], task["payload"]), parents, env.cred.run_id)
        self._start_heartbeats(env)
        ok, value = True, None
        try:
            value = _call(self.handler, ctx)
        except BaseException as e:  # noqa: BLE001
            ok, value = False, e
        self._hb_stop.set()
        if self.signal or self.exiting:
            return  # the main thread owns the exit
        if self.fenced is not None:
            # The supervisor closes the fence before it sends SIGTERM: run the hooks, then give the signal a moment.
            self._run_hooks(time.monotonic() + E.shutdown_budget_seconds(env.reclaim_grace_seconds))
            if self._signalled.wait(E.FENCED_SIGNAL_WAIT_SECONDS):
                return
            say(str(self.fenced))
            return self._done(E.EXIT_NOT_CURRENT)
        report = self._report_for(ctx, ok, value)
        while True:
            try:
                via, path, cause = reporter.deliver(report)
                if via == "spool":
                    say(f"kanban worker: the board could not take the final report ({cause}); it was spooled to {path}")
                break
            except NotCurrent as e:
                if self.signal:
                    return
                say(str(e))
                return self._done(E.EXIT_NOT_CURRENT)
            except InvalidReport as e:
                if report.outcome != "completed":
                    say(f"kanban worker: cannot record the {report.outcome} outcome: {e}")
                    return self._done(E.EXIT_FAILED)
                report = Report("failed", error=f"the handler's result was refused: {e}")
                say(f"kanban worker: {report.error}")
            except Exception as e:  # noqa: BLE001
                if self.signal:
                    return
                say(f"kanban worker: cannot record the {report.outcome} outcome: {_message(e)}")
                return self._done(E.EXIT_FAILED)
        if self.signal:
            return
        self._done(E.EXIT_OK if report.outcome == "completed" else E.EXIT_TEMPFAIL if report.outcome == "deferred" else E.EXIT_FAILED)

    def _fail_unloadable(self, why: str) -> None:
        """The task could not be loaded for a reason of its own: the run fails (counted) saying why."""
        assert self.reporter is not None
        say(f"kanban worker: {why}")
        try:
            via, path, cause = self.reporter.deliver(Report("failed", error=why))
            if via == "spool":
                say(f"kanban worker: the board could not take the final report ({cause}); it was spooled to {path}")
        except NotCurrent as e:
            say(str(e))
            return self._done(E.EXIT_NOT_CURRENT)
        except Exception as e:  # noqa: BLE001
            say(f"kanban worker: cannot record the failed outcome: {_message(e)}")
        return self._done(E.EXIT_FAILED)

    def _defer_unavailable(self, cause: BoardError, what: str) -> None:
        if not cause.is_board_fault:
            return self._done(E.EXIT_FAILED)
        assert self.reporter is not None
        report = Report("deferred", seconds=BOARD_UNAVAILABLE_DEFER_SECONDS, reason=f"{what}: {cause}")
        try:
            via, path, _ = self.reporter.deliver(report, None if self.reporter.board is not None else cause)
        except NotCurrent as e:
            say(str(e))
            return self._done(E.EXIT_NOT_CURRENT)
        except Exception as e:  # noqa: BLE001
            say(f"kanban worker: cannot record the deferral either: {_message(e)}")
            return self._done(E.EXIT_FAILED)
        say(f"kanban worker: the handler did not run; the run ends deferred for {BOARD_UNAVAILABLE_DEFER_SECONDS} s"
            + (f" (spooled to {path})" if via == "spool" else ""))
        self._done(E.EXIT_TEMPFAIL)

    def _report_for(self, ctx: Context, ok: bool, value: Any) -> Report:
        if ctx.defer_request is not None:
            return Report("deferred", seconds=ctx.defer_request.seconds, reason=ctx.defer_request.reason)
        if ok:
            return Report("completed", result=value)
        assert isinstance(value, BaseException)
        say("kanban worker: the handler failed: " + "".join(traceback.format_exception(type(value), value, value.__traceback__)).rstrip())
        return Report("failed", error=_message(value))

    # ------------------------------------------------------------ reports from the handler

    def _fence(self, e: NotCurrent) -> None:
        if self.fenced is None:
            self.fenced = e
            self._hb_stop.set()
            if self.ctx is not None:
                self.ctx._cancel(e)

    def heartbeat(self, progress: Any, has_progress: bool) -> None:
        if self.fenced is not None:
            raise self.fenced
        assert self.reporter is not None
        try:
            self.reporter.heartbeat(progress, has_progress)
        except NotCurrent as e:
            self._fence(e)
            raise
        except InvalidReport:
            raise
        except Exception as e:  # noqa: BLE001
            # Not the handler's failure (the board is unwritable, busy): said once per streak, tried again later.
            if not self._hb_failing:
                say(f"kanban worker: heartbeat not recorded (will keep trying): {_message(e)}")
            self._hb_failing = True
            return
        self._hb_failing = False
        self._last_beat = time.monotonic()

    def event(self, kind: str, data: Any) -> None:
        if self.fenced is not None:
            raise self.fenced
        assert self.reporter is not None
        try:
            self.reporter.event(kind, data)
        except NotCurrent as e:
            self._fence(e)
            raise

    def _start_heartbeats(self, env: E.WorkerEnv) -> None:
        if not self.auto_heartbeat:
            return
        interval = self.hb_interval or E.heartbeat_interval_seconds(env.heartbeat_timeout_seconds)
        if env.heartbeat_slot:
            # Not a slot (missing, a symlink, a FIFO, not ours, the wrong size): every beat is reported.
            try:
                self._slot = _Slot(env.heartbeat_slot)
            except (OSError, ValueError) as e:
                say(f"kanban worker: heartbeat slot not used ({_message(e)}): heartbeats go to the supervisor as reports")
        threading.Thread(target=self._beat_loop, args=(interval,), name="kanban-heartbeat", daemon=True).start()

    def _beat_loop(self, interval: float) -> None:
        wait = interval
        while not self._hb_stop.wait(wait):
            wait = interval
            if self.fenced is not None or self.signal or self.exiting or self.reporter is None:
                return
            if time.monotonic() - self._last_beat < interval / 2:
                continue  # an explicit heartbeat just happened
            # The slot first: this beat goes there only while the supervisor acknowledged the previous
            # one (alive, vouching for this run, reading the slot); otherwise it is reported as well.
            # One that went there only must be acknowledged itself within SLOT_ACK_WAIT_S, else it is
            # reported then (beats at most that far apart need no wait: the next beat checks first).
            if self._slot is not None:
                try:
                    if self._slot.beat():
                        beat_at = self._last_beat = time.monotonic()
                        if interval <= SLOT_ACK_WAIT_S:
                            continue
                        if self._hb_stop.wait(SLOT_ACK_WAIT_S):
                            return
                        wait = interval - SLOT_ACK_WAIT_S
                        if self._slot.acked() or self._last_beat != beat_at:
                            continue  # acknowledged, or a heartbeat was reported since
                        if self.fenced is not None or self.signal or self.exiting:
                            return
                except OSError as e:
                    say(f"kanban worker: heartbeat slot failed ({_message(e)}): heartbeats go to the supervisor as reports")
                    self._slot = None
            try:
                self.reporter.heartbeat()
                self._last_beat = time.monotonic()
            except NotCurrent as e:
                self._fence(e)
                return
            except Exception as e:  # noqa: BLE001
                if not self._hb_warned and not self.exiting:
                    self._hb_warned = True
                    say(f"kanban worker: automatic heartbeat failed (will keep trying): {_message(e)}")


class _Slot:
    """The run's heartbeat slot (policies/src/beat-slot.ts): 16 bytes, little-endian u64 beat at 0, the
    supervisor's acknowledgement at 8. Opened without following a symlink or blocking on a FIFO; only a
    regular file of this user, one link, at least 16 bytes."""

    def __init__(self, path: str) -> None:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ValueError(f"{path} is not a regular file")
            if st.st_uid != os.geteuid() or st.st_nlink != 1:
                raise ValueError(f"{path} is not this user's, or has several links")
            if st.st_size < 16:
                raise ValueError(f"{path} is {st.st_size} bytes, not a heartbeat slot (16)")
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        self.count = 0
        self.last: Optional[int] = None

    def beat(self) -> bool:
        """Write a beat; whether the previous one was acknowledged (this one needs no report)."""
        raw = os.pread(self.fd, 8, 8)
        trusted = len(raw) == 8 and self.last is not None and struct.unpack("<Q", raw)[0] == self.last
        self.count += 1
        v = ((os.getpid() << 32) | (self.count & 0xFFFFFFFF)) & 0xFFFFFFFFFFFFFFFF
        os.pwrite(self.fd, struct.pack("<Q", v), 0)
        self.last = v
        return trusted

    def acked(self) -> bool:
        """Whether the supervisor acknowledged the last beat."""
        raw = os.pread(self.fd, 8, 8)
        return len(raw) == 8 and self.last is not None and struct.unpack("<Q", raw)[0] == self.last
