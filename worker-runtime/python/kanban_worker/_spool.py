"""The spool: the last resort for a final report (mirrors worker-runtime/src/spool.ts writeSpool).
`<spool dir>/<run id>.json`, folder 0700, file 0600, written atomically (temp file, fsync, rename, fsync dir)."""
from __future__ import annotations

import os
import re
import secrets
from typing import Optional

from ._board import Report
from ._channel import dumps
from ._env import Credentials, WorkerEnv, is_pg_location

SPOOL_VERSION = 1


def spool_path(spool_dir: str, run_id: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_-]", "_", run_id)[:128] or "run"
    return os.path.join(spool_dir, f"{name}.json")


def _board_label(db: str) -> str:
    if not is_pg_location(db):
        return db
    # board pgLocationLabel: the URL without its password.
    return re.sub(r"^([a-z]+://[^:/@]*:)[^@]*@", r"\1***@", db, flags=re.I)


def write_spool(env: WorkerEnv, cred: Credentials, report: Report, at: int, cause: str, seq: Optional[str]) -> str:
    os.makedirs(env.spool_dir, mode=0o700, exist_ok=True)
    entry = {
        "version": SPOOL_VERSION,
        "taskId": cred.task_id,
        "runId": cred.run_id,
        "token": cred.token,
        "report": report.as_json(),
        "at": at,
        "board": _board_label(env.db),
        "pid": os.getpid(),
        "cause": cause,
        **({"seq": seq} if seq is not None else {}),
    }
    final = spool_path(env.spool_dir, cred.run_id)
    tmp = os.path.join(env.spool_dir, f".{os.path.basename(final)}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
    data = (dumps(entry) + "\n").encode("utf-8")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    done = False
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.rename(tmp, final)
        done = True
    finally:
        if fd >= 0:
            os.close(fd)
        if not done:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    dfd = os.open(env.spool_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return final
