"""The HTTP probe's answers from real sockets on loopback: an HTTP server, a service of
another protocol (it accepts the connection, then answers in its own way), a closed port.
The namespace join is not exercised here (the sandbox tests do that)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ocislim.sandbox.httpprobe import _request


@contextmanager
def server(reply: bytes) -> Iterator[int]:
    """A loopback TCP server answering every connection with ``reply``, then closing."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(4096)
                conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        listener.close()


def probe(port: int, wait: float = 5.0) -> dict[str, object]:
    request = {"port": port, "method": "GET", "path": "/"}
    return _request(request, time.monotonic() + wait, os.getpid())


def test_an_http_server_gives_its_status() -> None:
    with server(b"HTTP/1.0 204 No Content\r\n\r\n") as port:
        assert probe(port) == {"status": 204, "error": None, "connected": True}


def test_a_service_of_another_protocol_has_answered_without_http() -> None:
    with server(b"-ERR unknown command 'GET'\r\n") as port:  # as redis answers
        answer = probe(port)
    assert answer["status"] is None and answer["connected"] is True
    assert str(answer["error"]).startswith("not HTTP")


def test_a_service_that_hangs_up_on_http_is_answered_before_the_deadline() -> None:
    # redis closes the connection without a word when a request carries "Host:"; the
    # probe used to retry that until its deadline (30 s of every such build).
    with server(b"") as port:
        answer = probe(port, wait=20.0)
    assert answer["connected"] is True and answer["status"] is None
    assert str(answer["error"]).startswith("not HTTP"), answer


def test_a_closed_port_took_no_connection() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, never listening: connections are refused
        answer = probe(port, wait=0.3)
    assert answer["status"] is None and answer["connected"] is False


def test_an_endless_body_is_read_only_so_far() -> None:
    # A hostile server announces 100 GB and streams without end: the probe has its
    # status once it has read BODY_LIMIT bytes, and the server sees the connection close.
    from ocislim.sandbox.httpprobe import BODY_LIMIT

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    sent = [0]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000000\r\n\r\n")
            block = b"\0" * 65536
            try:
                while sent[0] < 50 * BODY_LIMIT:
                    conn.sendall(block)
                    sent[0] += len(block)
            except OSError:
                return  # the probe closed the connection

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        answer = probe(listener.getsockname()[1])
    finally:
        thread.join(timeout=30)
        listener.close()
    assert answer == {"status": 200, "error": None, "connected": True}
    assert not thread.is_alive()
    assert sent[0] < 50 * BODY_LIMIT  # it stopped reading long before the server stopped
