"""How a worker's reports reach the board, in order (mirrors worker-runtime/src/reporter.ts):
1. the report channel (KANBAN_SOCKET), when set and answering;
2. the board directly (SQLite; opened at the first report that needs it, then kept), same fence, same seq;
3. for a final report the board cannot take either: the spool, with its seq.
A PostgreSQL board has no direct path here (no driver in the standard library): its reports go
through the channel, and a final report the channel cannot take is spooled (KANBAN_SPOOL_DIR)."""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, Optional, Tuple, TypeVar

from ._board import BoardError, DirectBoard, Report
from ._channel import ReportChannel
from ._env import WorkerEnv
from ._errors import ChannelDown, ChannelLate, InvalidReport, NotCurrent
from ._spool import write_spool

T = TypeVar("T")
_seq_lock = threading.Lock()
_last_seq = 0


def next_seq() -> str:
    """CLOCK_MONOTONIC in nanoseconds (system-wide, as the Node runtime's), strictly increasing in this process."""
    global _last_seq
    with _seq_lock:
        n = time.monotonic_ns()
        if n <= _last_seq:
            n = _last_seq + 1
        _last_seq = n
        return str(n)


class Reporter:
    def __init__(self, env: WorkerEnv) -> None:
        self.env = env
        self.channel: Optional[ReportChannel] = ReportChannel(env.socket_path) if env.socket_path else None
        self.board: Optional[DirectBoard] = None
        self._open_lock = threading.Lock()
        # Reports on their way (heartbeats, events from any thread), until answered or given up on every path.
        self._in_flight = 0
        self._deadline: Optional[float] = None
        # The last heartbeat through the channel was late: the next goes to the board directly.
        self._beat_late = False
        self._settled = threading.Condition()

    def settled(self, deadline: Optional[float] = None) -> bool:
        """Wait until every report sent before was answered or given up on every path (a direct write after
        the channel failed included), at most until `deadline` (monotonic). Whether they all were."""
        with self._settled:
            while self._in_flight > 0:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._settled.wait(left)
            return True

    def _tracked(self, fn: Callable[[], T]) -> T:
        with self._settled:
            self._in_flight += 1
        try:
            return fn()
        finally:
            with self._settled:
                self._in_flight -= 1
                self._settled.notify_all()

    def open_board(self) -> DirectBoard:
        with self._open_lock:
            if self.board is None:
                if self.env.is_postgres:
                    raise BoardError("the Python runtime reaches a PostgreSQL board through the report channel only, and it did not answer", "io")
                self.board = DirectBoard(self.env.db)
                if self._deadline is not None:
                    self.board.set_deadline(self._deadline)
            return self.board

    def _via(self, fields: Optional[Dict[str, Any]], direct: Callable[[DirectBoard], T], on_answer: Callable[[Dict[str, Any]], T]) -> T:
        if self.channel is not None and fields is not None:
            try:
                return on_answer(self.channel.request(fields, self.env.cred))
            except ChannelLate:
                raise  # a late heartbeat is dropped, not written directly
            except ChannelDown:
                pass
        return direct(self.open_board())

    def load_task_and_parents(self) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        """The task and its parents' results. Over the channel: `payload` (the task, its parents' ids), then
        the parents' results page by page (`parents`); a channel that goes down meanwhile: all read directly."""
        if self.channel is not None:
            try:
                a = self.channel.request({"op": "payload"}, self.env.cred)
                return a["task"], (self._parent_pages() if a.get("parentIds") else {})
            except ChannelDown:
                pass
        return self.open_board().load_task_and_parents(self.env.cred)

    def _parent_pages(self) -> Dict[str, Any]:
        assert self.channel is not None
        out: Dict[str, Any] = {}
        after: Optional[str] = None
        for _ in range(1001):  # at most one page per parent (a task has at most 100)
            a = self.channel.request({"op": "parents"} if after is None else {"op": "parents", "after": after}, self.env.cred)
            out.update(a.get("parents") or {})
            nxt = a.get("next")
            if nxt is None:
                return out
            if nxt == after:
                raise ChannelDown(f"the parents op answered the same cursor again ({nxt})")
            after = str(nxt)
        raise ChannelDown("the parents op did not reach its last page")

    def heartbeat(self, progress: Any = None, has_progress: bool = False) -> None:
        """Through the channel; a late one (ChannelLate) is dropped and the next goes to the board directly,
        once: only the board can tell a worker whose supervisor is stuck that its run was fenced out."""
        fields: Optional[Dict[str, Any]] = {"op": "heartbeat", **({"progress": progress} if has_progress else {})}
        if self._beat_late:
            self._beat_late = False
            fields = None  # straight to the board (the `via` of a request-less report)
        try:
            self._tracked(lambda: self._via(fields, lambda b: b.heartbeat(self.env.cred, progress, has_progress), lambda a: None))
        except ChannelLate:
            self._beat_late = True
            raise

    def event(self, kind: str, data: Any) -> None:
        seq = next_seq()
        self._tracked(lambda: self._via({"op": "event", "kind": kind, "data": data, "seq": seq},
                                        lambda b: b.event(self.env.cred, kind, data, seq), lambda a: None))

    def stop(self, signal: str, deadline: Optional[float] = None) -> None:
        """Record the stop, after the reports on their way (settled), within `deadline`."""
        self.settled(deadline)
        seq = next_seq()
        if self.channel is not None:
            try:
                self.channel.request({"op": "stop", "signal": signal, "seq": seq}, self.env.cred, deadline)
                return
            except ChannelDown:
                pass
        self.open_board().record_stop(self.env.cred, signal, seq)

    def deliver(self, report: Report, open_error: Optional[BaseException] = None) -> Tuple[str, Optional[str], Optional[str]]:
        """The final report: ('channel'|'board'|'spool', spool path, cause). Raises NotCurrent, InvalidReport.
        Sent only after every report sent before it was answered or given up (settled)."""
        self.settled()
        seq = next_seq()
        if self.channel is not None:
            try:
                self.channel.request({**_fields(report), "seq": seq}, self.env.cred)
                return ("channel", None, None)
            except ChannelDown:
                pass
        at = int(time.time() * 1000)
        cause: BaseException = open_error or Exception("the board could not be opened")
        board: Optional[DirectBoard] = self.board
        if board is None and open_error is None:
            try:
                board = self.open_board()
            except BoardError as e:
                cause = e
        if board is not None:
            delay = 0.25
            for attempt in range(1, 4):
                try:
                    board.report(self.env.cred, report, seq, at)
                    return ("board", None, None)
                except (NotCurrent, InvalidReport):
                    raise
                except BoardError as e:
                    cause = e
                    if e.kind == "damaged" or attempt >= 3:
                        break
                    time.sleep(delay)
                    delay *= 2
        why = str(cause)
        return ("spool", write_spool(self.env, self.env.cred, report, at, why, seq), why)

    def set_deadline(self, deadline: float) -> None:
        """A shutdown ends at `deadline` (monotonic): the board (opened now or later) waits on a busy lock at most
        until then (the Node runtime's setBusyTimeout, plus its retries bounded)."""
        self._deadline = deadline
        if self.board is not None:
            self.board.set_deadline(deadline)

    def close(self, until: Optional[float] = None) -> None:
        """Close the channel and the board; a write in flight in another thread is waited for at most until
        `until` (monotonic), else 0.2 s."""
        wait = 0.2 if until is None else min(0.2, until - time.monotonic())
        if self.channel is not None:
            self.channel.close(min(0.05, max(0.0, wait)))
        if self.board is not None:
            self.board.close(wait)


def _fields(report: Report) -> Dict[str, Any]:
    if report.outcome == "completed":
        return {"op": "complete", "result": report.result}
    if report.outcome == "failed":
        return {"op": "fail", "error": report.error}
    out: Dict[str, Any] = {"op": "defer", "seconds": report.seconds}
    if report.reason is not None:
        out["reason"] = report.reason
    return out
