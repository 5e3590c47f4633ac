"""The worker's side of the report channel (docs/worker-protocol.md; mirrors worker-runtime/src/channel.ts).

One connection to KANBAN_SOCKET, opened at the first request. Requests are sent one at a time
under a lock (a thread's request waits for the one in flight), each answered once the supervisor
committed it. A request that cannot be answered (no socket, refused, broken, no answer within
TIMEOUT_SECONDS, or `unavailable`) raises ChannelDown, and the caller writes it directly with the
same seq. A request without a usable answer takes the channel down for RETRY_SECONDS; an `unavailable`
answer does not (the next request tries the channel again), as in channel.ts. A heartbeat not
answered in time (a bare one: no progress) on a connection still open raises ChannelLate and leaves the channel up (the
supervisor is alive but busy: the heartbeat is dropped, not written directly). `fenced` raises
NotCurrent, `invalid` raises InvalidReport.
"""
from __future__ import annotations

import json
import re
import socket
import threading
import time
from typing import Any, Dict, Optional

from ._env import Credentials
from ._errors import ChannelDown, ChannelLate, InvalidReport, NotCurrent

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 1024 * 1024  # a request line (protocol.ts MAX_FRAME_BYTES)
MAX_ANSWER_BYTES = 16 * 1024 * 1024  # an answer line (protocol.ts MAX_ANSWER_BYTES)
TIMEOUT_SECONDS = 5.0
RETRY_SECONDS = 5.0


_SURROGATE = re.compile('[\ud800-\udfff]')


def dumps(v: Any) -> str:
    """JSON as the Node side writes it (JSON.stringify): compact, UTF-8, no NaN."""
    s = json.dumps(v, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    # A lone surrogate (an undecodable file name, surrogateescape) cannot be encoded as UTF-8: escape
    # it as JSON.stringify does ("\udcff"), so the text is the Node runtime's and always encodable.
    return _SURROGATE.sub(lambda m: "\\u%04x" % ord(m.group()), s)


class _Late(Exception):
    """No answer by the request's time (the caller decides: ChannelLate for a heartbeat, else down)."""


class ReportChannel:
    def __init__(self, path: str, timeout: float = TIMEOUT_SECONDS, retry: float = RETRY_SECONDS) -> None:
        self.path = path
        self.timeout = timeout
        self.retry = retry
        self._sock: Optional[socket.socket] = None
        self._buf = bytearray()
        self._next_id = 1
        self._down_until = 0.0
        self._lock = threading.Lock()
        self.last_error: Optional[str] = None

    def request(self, fields: Dict[str, Any], cred: Optional[Credentials], deadline: Optional[float] = None) -> Dict[str, Any]:
        """Send a request, return its ok answer (raises ChannelDown, NotCurrent or InvalidReport)."""
        if time.monotonic() < self._down_until:
            raise ChannelDown(f"the report channel {self.path} is down: {self.last_error or 'unknown'}")
        limit = self.timeout if deadline is None else max(0.05, min(self.timeout, deadline - time.monotonic()))
        if not self._lock.acquire(timeout=limit):
            if fields.get("op") == "heartbeat" and "progress" not in fields:
                raise ChannelLate(f"the report channel {self.path} is busy with another request: heartbeat not recorded")
            raise ChannelDown(f"the report channel {self.path} is busy")
        try:
            return self._request(fields, cred, time.monotonic() + limit)
        finally:
            self._lock.release()

    def _request(self, fields: Dict[str, Any], cred: Optional[Credentials], until: float) -> Dict[str, Any]:
        rid = self._next_id
        self._next_id += 1
        msg: Dict[str, Any] = {"v": PROTOCOL_VERSION, "id": rid, **fields}
        if cred is not None:
            msg.update(task=cred.task_id, run=cred.run_id, token=cred.token)
        try:
            line = dumps(msg).encode("utf-8")
        except (TypeError, ValueError) as e:
            raise InvalidReport(f"the report is not serialisable as JSON: {e}") from None
        if len(line) > MAX_FRAME_BYTES:
            raise ChannelDown(f"the report is larger than the report channel's {MAX_FRAME_BYTES} bytes: written directly")
        try:
            sock = self._connect(until)
            sock.settimeout(max(0.01, until - time.monotonic()))
            sock.sendall(line + b"\n")
            try:
                answer = self._read_answer(sock, rid, until)
            except (socket.timeout, _Late):
                # Only a bare heartbeat (a liveness time, no data) may be dropped; one with progress is data.
                if fields.get("op") != "heartbeat" or "progress" in fields:
                    raise ChannelDown(f"no answer within {self.timeout:g} s") from None
                # A late heartbeat fails alone: the connection stays (its answer, if it comes, is skipped by id).
                raise ChannelLate(f"the supervisor did not answer the heartbeat within {self.timeout:g} s (busy): "
                                  "not recorded; the next one goes through the channel") from None
        except ChannelLate:
            raise
        except ChannelDown as e:
            self._down(str(e))
            raise
        except (OSError, ValueError) as e:
            why = "no answer in time" if isinstance(e, socket.timeout) else str(e)
            self._down(why)
            raise ChannelDown(f"the report channel {self.path} failed: {why}") from None
        if answer.get("ok") is True:
            return answer
        code = answer.get("code")
        if code == "fenced" and cred is not None:
            raise NotCurrent(cred.run_id, cred.task_id)
        if code == "invalid":
            raise InvalidReport(str(answer.get("error", "invalid request")))
        raise ChannelDown(f"the supervisor could not apply the report: {answer.get('error')}")

    def _connect(self, until: float) -> socket.socket:
        if self._sock is not None:
            return self._sock
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(max(0.01, until - time.monotonic()))
            s.connect(self.path)
        except OSError as e:
            s.close()
            raise ChannelDown(f"the report channel {self.path} is unreachable: {e}") from None
        self._sock = s
        self._buf = bytearray()
        return s

    def _read_answer(self, sock: socket.socket, rid: int, until: float) -> Dict[str, Any]:
        searched = 0  # the buffer before this holds no newline (answers may be MiBs: never search it twice)
        while True:
            nl = self._buf.find(b"\n", searched)
            if nl >= 0:
                line = bytes(self._buf[:nl])
                del self._buf[: nl + 1]
                searched = 0
                a = json.loads(line.decode("utf-8"))
                if isinstance(a, dict) and a.get("id") == rid:
                    return a
                continue  # an answer to a request given up on earlier
            searched = len(self._buf)
            if len(self._buf) > MAX_ANSWER_BYTES:
                raise ChannelDown(f"an answer longer than the {MAX_ANSWER_BYTES} bytes an answer may have")
            left = until - time.monotonic()
            if left <= 0:
                raise _Late()
            sock.settimeout(left)
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise ChannelDown("the supervisor closed the connection")
            self._buf += chunk

    def _down(self, why: str, retry: Optional[float] = None) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = None
        self._buf = bytearray()
        self.last_error = why
        self._down_until = time.monotonic() + (self.retry if retry is None else retry)

    def settled(self, timeout: float) -> None:
        """Wait (at most `timeout`) for the request in flight to be answered."""
        if self._lock.acquire(timeout=max(0.0, timeout)):
            self._lock.release()

    def close(self, wait: float = 0.05) -> None:
        got = self._lock.acquire(timeout=wait) if wait > 0 else self._lock.acquire(blocking=False)
        if got:
            try:
                self._down("closed by the worker", 0)
            finally:
                self._lock.release()
