"""HTTP probes from inside a sandbox's network namespace (a helper process).

Usage: ``python -m ocislim.sandbox.httpprobe INIT_PID REQUESTS_JSON WAIT_SECONDS``

Joins the user and network namespaces of the sandbox whose init has host pid
INIT_PID (the caller owns that user namespace, so no privilege is needed; the
join must happen in a fresh, single-threaded process, hence this helper), then
sends each request to 127.0.0.1, retrying the connection while the server starts
(for at most WAIT_SECONDS in total, and only while the sandbox is alive), and reads
each body to at most BODY_LIMIT bytes in BODY_SECONDS.
Prints one JSON list on stdout: ``{"status": int | null, "error": str | null,
"connected": bool}`` per request, in order.  Exit status 0 unless the namespaces cannot be joined.
"""

from __future__ import annotations

import ctypes
import http.client
import json
import os
import sys
import time
from typing import Any

from ocislim.sandbox.libc import CLONE_NEWNET, CLONE_NEWUSER

REQUEST_TIMEOUT = 10.0
# A port that accepts and then closes without a reply may be a server still starting
# (retried), or a service of another protocol that hangs up on HTTP (redis does, on
# seeing "Host:"): after this long of such hang-ups it is the latter.
HANGUP_GRACE = 2.0
# The body is read so the server finishes its work (the trace sees what serving it
# touched), but only so far: an endless or dripping body must not hold the build.
BODY_LIMIT = 16 << 20
BODY_SECONDS = 30.0


def _join(pid: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    for name, flag in (("user", CLONE_NEWUSER), ("net", CLONE_NEWNET)):
        if os.readlink(f"/proc/{pid}/ns/{name}") == os.readlink(f"/proc/self/ns/{name}"):
            continue  # e.g. --network host: already there
        fd = os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            if libc.setns(fd, flag) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"joining the sandbox's {name} namespace: {os.strerror(err)}")
        finally:
            os.close(fd)


def _request(req: dict[str, Any], deadline: float, pid: int) -> dict[str, Any]:
    """One request's result.  ``connected``: the port accepted a TCP connection, so a
    service that does not speak HTTP (a database, a cache) still answers the probe."""
    last = "no connection"
    connected = False
    hung_up_since: float | None = None
    while True:
        conn = http.client.HTTPConnection("127.0.0.1", int(req["port"]), timeout=REQUEST_TIMEOUT)
        try:
            conn.connect()
            connected = True
            conn.request(str(req["method"]), str(req["path"]), headers={"Connection": "close"})
            response = conn.getresponse()
            _drain(response)
            return {"status": response.status, "error": None, "connected": True}
        except ConnectionRefusedError as exc:
            last = str(exc)
        except ConnectionResetError as exc:  # RemoteDisconnected too: accepted, then closed
            last = str(exc)
            if connected:
                now = time.monotonic()
                hung_up_since = now if hung_up_since is None else hung_up_since
                if now - hung_up_since >= HANGUP_GRACE:
                    return {"status": None, "error": f"not HTTP: {exc!r}", "connected": True}
        except OSError as exc:
            return {"status": None, "error": str(exc), "connected": connected}
        except http.client.HTTPException as exc:
            return {"status": None, "error": f"not HTTP: {exc!r}", "connected": connected}
        finally:
            conn.close()
        if time.monotonic() >= deadline or not os.path.exists(f"/proc/{pid}/ns"):
            return {"status": None, "error": last, "connected": connected}
        time.sleep(0.05)


def _drain(response: http.client.HTTPResponse) -> None:
    """Read the body to its end, to :data:`BODY_LIMIT` bytes or for :data:`BODY_SECONDS`."""
    until = time.monotonic() + BODY_SECONDS
    total = 0
    while total < BODY_LIMIT and time.monotonic() < until:
        chunk = response.read1(65536)
        if not chunk:
            return
        total += len(chunk)


def main(argv: list[str]) -> int:
    pid, requests, wait = int(argv[0]), json.loads(argv[1]), float(argv[2])
    try:
        _join(pid)
    except OSError as exc:
        print(f"ocislim httpprobe: {exc}", file=sys.stderr)
        return 1
    deadline = time.monotonic() + wait
    print(json.dumps([_request(r, deadline, pid) for r in requests]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
