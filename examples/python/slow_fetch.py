#!/usr/bin/env python3
"""A Python skill that calls a slow HTTP endpoint, with heartbeats, cancellation and a result.

The endpoint is served by this same process (a local http.server on 127.0.0.1, started before the
handler) so that the example runs anywhere: GET /slow?seconds=S answers 200 and sends its body in
ten pieces over S seconds. The handler fetches it `count` times, reading in pieces; between pieces it
heartbeats its progress and checks `ctx.is_cancelled`. On SIGTERM (a cancel, a timeout, a stall, the
supervisor stopping) the shutdown hook closes the response in flight, which ends the blocking read
at once, and the runtime exits 143 well within the grace.

    pip install ./worker-runtime/python
    kanban-supervisor skill add slow-fetch --heartbeat-timeout 10 -- python3 examples/python/slow_fetch.py
    kanban-supervisor add --skill slow-fetch --payload '{"count": 3, "seconds": 2}'
    kanban-supervisor run --until-idle
"""
import http.client
import http.server
import socket
import sys
import threading
import time
import urllib.parse
from typing import Any, Dict, List, Optional

from kanban_worker import Context, run_worker


class SlowHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        seconds = float(query.get("seconds", ["1"])[0])
        piece = b"x" * 1024
        self.send_response(200)
        self.send_header("Content-Length", str(len(piece) * 10))
        self.end_headers()
        try:
            for _ in range(10):
                time.sleep(seconds / 10)
                self.wfile.write(piece)
                self.wfile.flush()
        except OSError:
            pass  # the client went away (cancelled)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


def start_server() -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


SERVER = start_server()


def handle(ctx: Context) -> Dict[str, Any]:
    payload = ctx.task.payload or {}
    count = int(payload.get("count", 3))
    seconds = float(payload.get("seconds", 1))
    port = SERVER.server_address[1]
    in_flight: List[Optional[http.client.HTTPConnection]] = [None]

    def abort(reason: BaseException) -> None:
        # Runs on SIGTERM (or once the run is fenced out), in another thread: shutting the socket
        # down ends the handler's blocking read at once. (No report here: the run is being reclaimed.)
        conn = in_flight[0]
        if conn is not None and conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        print(f"slow_fetch: aborted the request in flight ({reason})", file=sys.stderr, flush=True)

    ctx.on_shutdown(abort)
    total = 0
    for i in range(count):
        if ctx.is_cancelled:
            break
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        in_flight[0] = conn
        try:
            conn.request("GET", f"/slow?seconds={seconds}")
            response = conn.getresponse()
            while not ctx.is_cancelled:
                chunk = response.read1(1024)
                if not chunk:
                    break
                total += len(chunk)
                ctx.heartbeat({"request": i + 1, "of": count, "bytes": total})
        finally:
            in_flight[0] = None
            conn.close()
        if not ctx.is_cancelled:
            ctx.event("fetched", {"request": i + 1, "bytes": total})
    return {"fetched": count, "bytes": total}


if __name__ == "__main__":
    run_worker(handle)
