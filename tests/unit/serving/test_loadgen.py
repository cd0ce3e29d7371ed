"""The load generator against a small keep-alive HTTP server on loopback (no Ray)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from raypipe.serving.loadgen import run_load

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest.fixture
def server() -> Iterator[dict]:
    """Answers every request with 200; ``close_after`` closes a connection after N answers."""
    state: dict = {"connections": 0, "requests": 0, "close_after": None, "port": None}
    ready = threading.Event()
    loop = asyncio.new_event_loop()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state["connections"] += 1
        answered = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                # counted before the answer leaves: a client holding its last answer must find
                # it counted (counted after drain, the test could read 49 of 50)
                state["requests"] += 1
                answered += 1
                writer.write(ANSWER)
                await writer.drain()
                if state["close_after"] and answered >= state["close_after"]:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    def serve() -> None:
        listener = loop.run_until_complete(asyncio.start_server(handle, "127.0.0.1", 0))
        state["port"] = listener.sockets[0].getsockname()[1]
        ready.set()
        loop.run_forever()
        listener.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(10)
    yield state
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def test_open_loop_sends_at_the_rate_over_connections_opened_first(server: dict) -> None:
    url = f"http://127.0.0.1:{server['port']}/predict"
    result = run_load(url, [b'{"player_id": 1}'], concurrency=4, rate=100, duration_s=0.5)
    assert result.failed == 0 and result.ok == server["requests"] == 50
    assert server["connections"] == 4  # opened before the clock, kept alive


def test_a_closed_connection_is_reopened_and_counted_once(server: dict) -> None:
    server["close_after"] = 3
    url = f"http://127.0.0.1:{server['port']}/"
    result = run_load(url, [b"{}"], concurrency=2, rate=40, duration_s=0.5)
    # Each connection answers 3 requests, then the next request on it fails and reopens it.
    assert result.ok == server["requests"] and result.ok + result.failed == 20
    assert result.failed >= 1 and server["connections"] > 2
