"""The direct path to a SQLite board: the worker's fenced writes, when the report channel does not answer.

The ONE module of the Python runtime that holds SQL. It mirrors, statement for statement:
  - board/src/open.ts `connect` (per-connection pragmas; the journal mode is never changed here),
  - board/src/sqlite/tx.ts (one BEGIN IMMEDIATE transaction per write, retried on SQLITE_BUSY),
  - board/src/sqlite/worker.ts (fence, loadRun, heartbeat, workerEvent, report, recordStop),
  - board/src/sqlite/graph.ts (releaseChildren, parentResults) and hot-sql.ts childrenToRelease,
  - board/src/validate.ts (eventKind, reportSeq, jsonText, validReport).
test/worker-runtime/python-board.test.ts runs the same reports through the Node direct path and this
one on two fresh boards and compares the rows: a change on either side that is not mirrored fails CI.
"""
from __future__ import annotations

import math
import os
import random
import re
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, TypeVar

from urllib.parse import quote

from ._channel import dumps
from ._env import Credentials
from ._errors import InvalidReport, NotCurrent

if TYPE_CHECKING:
    import sqlite3
else:
    class _Lazy:
        """sqlite3, imported at its first use: a worker whose reports all go through the channel never
        loads it (start-up is what a fleet of light workers pays most for)."""

        def __getattr__(self, name: str) -> Any:
            import sqlite3 as mod
            globals()["sqlite3"] = mod
            return getattr(mod, name)

    sqlite3 = _Lazy()

# The board schema this module writes (board/src/schema.ts SCHEMA_VERSION).
SCHEMA_VERSION = 8
BUSY_TIMEOUT_SECONDS = 2.0  # worker-runtime/src/board-io.ts WORKER_BUSY_TIMEOUT_MS
BUSY_RETRIES = 10  # WORKER_BUSY_RETRIES
JOURNAL_SIZE_LIMIT = 16 * 1024 * 1024  # board/src/open.ts
WAL_AUTOCHECKPOINT_PAGES = 1000
MAX_JSON_CHARS = 4 * 1024 * 1024  # UTF-16 code units of JSON text (validate.ts: a JS string's length)
RUN_ERROR_MAX_CHARS = 8192
EVENT_ERROR_MAX_CHARS = 1024
_EVENT_KIND = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}\Z")
_SEQ = re.compile(r"^[0-9]{1,20}\Z")

T = TypeVar("T")


class BoardError(Exception):
    """The board could not take a write; `kind` is damaged, io, busy, access or other (board errors.ts classifyError)."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind

    @property
    def is_board_fault(self) -> bool:
        return self.kind != "other"


def classify(e: BaseException) -> str:
    m = str(e).lower()
    if "locked" in m or "busy" in m:
        return "busy"
    if "malformed" in m or "not a database" in m or "corrupt" in m:
        return "damaged"
    if "disk i/o" in m or "unable to open" in m or "disk is full" in m or "database or disk is full" in m:
        return "io"
    if "readonly" in m or "read-only" in m or "permission" in m or "access" in m or "authoriz" in m:
        return "access"
    return "other"


def json_text(what: str, v: Any) -> str:
    try:
        s = dumps(v)
    except (TypeError, ValueError) as e:
        raise InvalidReport(f"{what} is not serialisable as JSON: {e}") from None
    if utf16_length(s) > MAX_JSON_CHARS:
        raise InvalidReport(f"{what} is larger than 4 MiB of JSON")
    return s


def utf16_length(s: str) -> int:
    """The length JavaScript gives a string: UTF-16 code units (a character beyond U+FFFF counts 2).
    `s` holds no lone surrogate (dumps escapes them), so it always encodes."""
    return len(s) if s.isascii() else len(s.encode("utf-16-le")) // 2


def js_prefix(s: str, n: int) -> str:
    """validate.ts prefix: the first n UTF-16 code units (how the board cuts errors), never ending inside a
    pair (a character beyond U+FFFF that would be cut in half is left out)."""
    if s.isascii():
        return s[:n]
    if len(s) * 2 <= n:
        return s
    out = s.encode("utf-16-le", "surrogatepass")[: 2 * n].decode("utf-16-le", "surrogatepass")
    return out[:-1] if out and "\ud800" <= out[-1] <= "\udbff" else out


_SURROGATE = re.compile("[\ud800-\udfff]")


def _as_stored(s: str) -> str:
    """A text column as the Node driver stores it: a lone surrogate (not UTF-8) becomes U+FFFD."""
    return _SURROGATE.sub("\ufffd", s)


def event_kind(kind: str) -> str:
    if not isinstance(kind, str) or not _EVENT_KIND.match(kind):
        raise InvalidReport(f"event kind {dumps(kind) if isinstance(kind, str) else repr(kind)} is invalid: use 1-64 letters, digits, '.', '_', ':' or '-'")
    return kind


def report_seq(seq: Optional[str]) -> Optional[str]:
    if seq is None:
        return None
    if not isinstance(seq, str) or not _SEQ.match(seq):
        raise InvalidReport(f"a report's seq must be 1-20 decimal digits, got {dumps(seq) if isinstance(seq, str) else repr(seq)}")
    return seq


@dataclass(frozen=True)
class Report:
    """A final report: outcome completed (result), failed (error) or deferred (seconds, reason)."""

    outcome: str
    result: Any = None
    error: str = "failed"
    seconds: float = 0.0
    reason: Optional[str] = None

    def as_json(self) -> Dict[str, Any]:
        if self.outcome == "completed":
            return {"outcome": "completed", "result": self.result}
        if self.outcome == "failed":
            return {"outcome": "failed", "error": self.error}
        out: Dict[str, Any] = {"outcome": "deferred", "seconds": self.seconds}
        if self.reason is not None:
            out["reason"] = self.reason
        return out


def _now() -> int:
    return int(time.time() * 1000)


class DirectBoard:
    """A worker's connection to a SQLite board (never creates, migrates or changes its journal mode)."""

    def __init__(self, path: str) -> None:
        self.path = path
        if not os.path.exists(path):
            # Not the board's fault but the configuration's (as the Node runtime: the run fails, exit 1).
            raise BoardError(f"board {path} does not exist (run `kanban-supervisor init`)", "other")
        try:
            self.db = sqlite3.connect(f"file:{quote(path, safe='/')}?mode=rw", uri=True, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise BoardError(f"cannot open board {path}: {e}", classify(e)) from None
        self.db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        # A shutdown's end (monotonic; set_deadline): no write waits on a busy board past it.
        self._deadline: Optional[float] = None
        self._busy_timeout = BUSY_TIMEOUT_SECONDS
        try:
            # trusted_schema stays at its default here: older SQLite builds (3.40, Debian 12's Python) refuse the
            # board's CHECK constraints (json_valid) with it OFF. A worker opens the board its supervisor made.
            for p in ("cell_size_check = ON", "foreign_keys = ON", "synchronous = FULL", "secure_delete = ON",
                      f"journal_size_limit = {JOURNAL_SIZE_LIMIT}", f"wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}"):
                self.db.execute(f"PRAGMA {p}")
            version = int(self.db.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.Error as e:
            self.db.close()
            raise BoardError(f"cannot open board {path}: {e}", classify(e)) from None
        if version != SCHEMA_VERSION:
            self.db.close()
            raise BoardError(
                f"board {path} has schema version {version}; this Python runtime writes version {SCHEMA_VERSION}"
                + (" (bring it up to date with `kanban-supervisor init`)" if version < SCHEMA_VERSION else " (upgrade kanban-worker)"),
                "other",
            )

    # ------------------------------------------------------------ transactions

    def _retry(self, fn: Callable[[], T]) -> T:
        with self._lock:
            return self._retry_locked(fn)

    def _retry_locked(self, fn: Callable[[], T]) -> T:
        for attempt in range(BUSY_RETRIES + 1):
            self._bound_wait()
            try:
                return fn()
            except sqlite3.Error as e:
                kind = classify(e)
                if kind == "busy" and attempt < BUSY_RETRIES:
                    pause = min(0.2, 0.005 * 2 ** min(attempt, 5)) * (0.5 + random.random())
                    if self._deadline is not None and time.monotonic() + pause >= self._deadline:
                        raise BoardError(f"board {self.path}: {e} (the shutdown's time is up)", kind) from None
                    time.sleep(pause)
                    continue
                raise BoardError(f"board {self.path}: {e}", kind) from None
        raise AssertionError("unreachable")

    def _bound_wait(self) -> None:
        """Under the lock, before an attempt: the busy timeout never reaches past the shutdown's deadline."""
        if self._deadline is None:
            return
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise BoardError(f"board {self.path}: the shutdown's time is up", "busy")
        want = min(BUSY_TIMEOUT_SECONDS, left)
        if want < self._busy_timeout:
            self.db.execute(f"PRAGMA busy_timeout = {max(1, int(want * 1000))}")
            self._busy_timeout = want

    def _write(self, fn: Callable[[], T]) -> T:
        def tx() -> T:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                out = fn()
                self.db.execute("COMMIT")
                return out
            except BaseException:
                try:
                    self.db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                raise
        return self._retry(tx)

    def _one(self, sql: str, *args: Any) -> Optional[sqlite3.Row]:
        row: Optional[sqlite3.Row] = self.db.execute(sql, args).fetchone()
        return row

    def _event(self, task_id: str, run_id: Optional[str], kind: str, data: Any, at: int, seq: Optional[str] = None) -> None:
        self.db.execute("INSERT INTO events (task_id, run_id, kind, data, at, seq) VALUES (?, ?, ?, ?, ?, ?)",
                        (task_id, run_id, kind, None if data is None else dumps(data), at, seq))

    # ------------------------------------------------------------ worker.ts

    def _fence(self, cred: Credentials, allow_reclaiming: bool = False) -> None:
        r = self._one("SELECT r.*, t.status AS t_status, t.current_run_id AS t_current FROM runs r JOIN tasks t ON t.id = r.task_id "
                      "WHERE r.id = ? AND r.task_id = ?", cred.run_id, cred.task_id)
        current = (r is not None and r["token"] == cred.token and r["status"] != "ended" and r["exited_at"] is None
                   and (allow_reclaiming or (r["stop_reason"] is None and r["t_status"] == "running" and r["t_current"] == cred.run_id)))
        if not current:
            raise NotCurrent(cred.run_id, cred.task_id)

    def load_task_and_parents(self, cred: Credentials) -> "tuple[Dict[str, Any], Dict[str, Any]]":
        def read() -> "tuple[Dict[str, Any], Dict[str, Any]]":
            self.db.execute("BEGIN")
            try:
                self._fence(cred)
                t = self._one("SELECT id, title, skill, payload FROM tasks WHERE id = ?", cred.task_id)
                assert t is not None
                task = {"id": t["id"], "title": t["title"], "skill": t["skill"], "payload": _parse(t["payload"])}
                parents: Dict[str, Any] = {}
                for pid, result in self.db.execute("SELECT t.id, t.result FROM links l JOIN tasks t ON t.id = l.parent WHERE l.child = ? ORDER BY l.parent",
                                                   (cred.task_id,)):
                    parents[str(pid)] = _parse(result)
                return task, parents
            finally:
                self.db.execute("COMMIT")
        return self._retry(read)

    def heartbeat(self, cred: Credentials, progress: Any = None, has_progress: bool = False, now: Optional[int] = None) -> None:
        text = json_text("progress", progress) if has_progress else None
        at = _now() if now is None else now

        def w() -> None:
            self._fence(cred)
            self.db.execute("UPDATE runs SET heartbeat_at = ?, progress = COALESCE(?, progress) WHERE id = ?", (at, text, cred.run_id))
        self._write(w)

    def _event_seen(self, cred: Credentials, seq: Optional[str]) -> bool:
        if seq is None:
            return False
        return self._one("SELECT 1 AS x FROM events e JOIN runs r ON r.id = e.run_id WHERE e.run_id = ? AND e.seq = ? AND r.token = ? AND r.task_id = ?",
                         cred.run_id, seq, cred.token, cred.task_id) is not None

    def event(self, cred: Credentials, kind: str, data: Any, seq: Optional[str], now: Optional[int] = None) -> str:
        event_kind(kind)
        text = json_text("event data", data)
        s = report_seq(seq)
        at = _now() if now is None else now

        def w() -> str:
            if self._event_seen(cred, s):
                return "duplicate"
            self._fence(cred)
            self.db.execute("INSERT INTO events (task_id, run_id, kind, data, at, seq) VALUES (?, ?, ?, ?, ?, ?)",
                            (cred.task_id, cred.run_id, kind, text, at, s))
            return "applied"
        return self._write(w)

    def report(self, cred: Credentials, rep: Report, seq: Optional[str], now: Optional[int] = None) -> str:
        s = report_seq(seq)
        at = _now() if now is None else now
        if rep.outcome == "completed":
            result_text = json_text("result", rep.result)
        elif rep.outcome == "deferred":
            if not isinstance(rep.seconds, (int, float)) or not math.isfinite(rep.seconds) or rep.seconds < 0:
                raise InvalidReport(f"defer seconds must be a non-negative number, got {rep.seconds}")
            defer_ms = _js_round(rep.seconds * 1000)
            if defer_ms > MAX_DEFER_MS:
                raise InvalidReport(f"defer seconds must be at most {MAX_DEFER_MS // 1000}, got {rep.seconds}")
        elif rep.outcome != "failed":
            raise InvalidReport(f"unknown outcome {rep.outcome!r}")

        def w() -> str:
            if s is not None:
                r = self._one("SELECT token, report_seq FROM runs WHERE id = ? AND task_id = ?", cred.run_id, cred.task_id)
                if r is not None and r["token"] == cred.token and r["report_seq"] == s:
                    return "duplicate"
            self._fence(cred)
            self.db.execute("UPDATE runs SET report_seq = ? WHERE id = ?", (s, cred.run_id))
            if rep.outcome == "completed":
                self.db.execute("UPDATE runs SET status = 'ended', outcome = 'completed', ended_at = ? WHERE id = ?", (at, cred.run_id))
                self.db.execute("UPDATE tasks SET status = 'done', result = ?, consecutive_failures = 0, last_error = NULL, updated_at = ? WHERE id = ?",
                                (result_text, at, cred.task_id))
                self._event(cred.task_id, cred.run_id, "reported", {"outcome": "completed"}, at, s)
                self._release_children(cred.task_id, at)
            elif rep.outcome == "failed":
                self.db.execute("UPDATE runs SET status = 'ended', outcome = 'failed', error = ?, ended_at = ? WHERE id = ?",
                                (_as_stored(js_prefix(rep.error, RUN_ERROR_MAX_CHARS)), at, cred.run_id))
                self._event(cred.task_id, cred.run_id, "reported", {"outcome": "failed", "error": js_prefix(rep.error, EVENT_ERROR_MAX_CHARS)}, at, s)
            else:
                until = at + defer_ms
                self.db.execute("UPDATE runs SET status = 'ended', outcome = 'deferred', defer_until = ?, error = ?, ended_at = ? WHERE id = ?",
                                (until, rep.reason, at, cred.run_id))
                self._event(cred.task_id, cred.run_id, "reported", {"outcome": "deferred", "until": until, "reason": rep.reason}, at, s)
            return "applied"
        return self._write(w)

    def _release_children(self, parent: str, at: int) -> None:
        rows = self.db.execute(
            "SELECT l.child FROM links l INDEXED BY links_parent CROSS JOIN tasks t ON t.id = l.child "
            "WHERE l.parent = ? AND t.status = 'waiting' "
            "AND NOT EXISTS (SELECT 1 FROM links l2 JOIN tasks p ON p.id = l2.parent WHERE l2.child = l.child AND p.status <> 'done') "
            "ORDER BY l.child", (parent,)).fetchall()
        for (child,) in rows:
            self.db.execute("UPDATE tasks SET status = 'ready', updated_at = ? WHERE id = ? AND status = 'waiting'", (at, str(child)))
            self._event(str(child), None, "released", {"after": parent}, at)

    def record_stop(self, cred: Credentials, signal: str, seq: Optional[str], now: Optional[int] = None) -> str:
        s = report_seq(seq)
        at = _now() if now is None else now

        def w() -> str:
            if self._event_seen(cred, s):
                return "duplicate"
            self._fence(cred, True)
            self.db.execute("UPDATE runs SET stopped_on_request = 1 WHERE id = ?", (cred.run_id,))
            self._event(cred.task_id, cred.run_id, "stopped_on_request", {"signal": signal}, at, s)
            return "applied"
        return self._write(w)

    def set_deadline(self, deadline: float) -> None:
        """A shutdown ends at `deadline` (monotonic): every later attempt waits on a busy board at most until then,
        and none starts after it. Runs no SQL here (another thread may be inside a busy wait on the connection,
        holding SQLite's mutex): the next attempt applies it."""
        self._deadline = deadline

    def close(self, wait: float = 0.2) -> None:
        """Checkpoint what is free and close; a write in flight in another thread is waited for at most `wait` s
        (then the process exit ends the connection: SQLite recovers as from a crash)."""
        got = self._lock.acquire(timeout=wait) if wait > 0 else self._lock.acquire(blocking=False)
        if not got:
            return
        self._close()

    def _close(self) -> None:
        """Checkpoint what is free to checkpoint (never waiting) and close; never raises (board-io checkpointAndClose)."""
        try:
            self.db.execute("PRAGMA busy_timeout = 0")
            self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            pass
        try:
            self.db.close()
        except sqlite3.Error:
            pass


def _parse(text: Optional[str]) -> Any:
    import json
    return None if text is None else json.loads(text)


# The largest deferral SQLite's INTEGER column holds as a time (now + it stays within 2**63 - 1 ms).
MAX_DEFER_MS = 2**62


def _js_round(x: float) -> int:
    """Math.round: halves go up."""
    return int(math.floor(x + 0.5))
