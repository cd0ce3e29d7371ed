"""A small HTTP/1.1 load generator over keep-alive connections (asyncio, raw sockets).

Used by the hot-swap test and ``benchmarks/serving.py``. A raw client costs far less CPU per
request than a general HTTP library, which matters when client and server share two cores.

* closed loop (``rate=None``): ``concurrency`` connections each send the next request as soon as
  the previous answer arrives; measures the highest throughput at that concurrency;
* open loop (``rate``): requests are due at fixed intervals and latency counts from the due
  time, so a stalled server cannot hide its queue (no coordinated omission).

The connections are opened before the clock starts (as ``wrk`` does), so the first requests do
not carry the TCP handshakes; a connection that breaks is reopened on the clock.

A request fails when the connection breaks, times out, or the status is not 200.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import numpy as np

__all__ = ["LoadResult", "run_load"]


@dataclass
class LoadResult:
    """Latencies (ms) of answered requests, and counts by outcome."""

    latencies_ms: list[float] = field(default_factory=list)
    failed: int = 0
    codes: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0

    @property
    def ok(self) -> int:
        return len(self.latencies_ms)

    @property
    def rps(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    def summary(self) -> dict[str, float]:
        return {
            "rps": round(self.rps, 1),
            "p50_ms": round(self.percentile(50), 3),
            "p99_ms": round(self.percentile(99), 3),
            "ok": self.ok,
            "failed": self.failed,
        }


def _request_bytes(host: str, path: str, body: bytes, token: str | None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"{auth}Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _answer(reader: asyncio.StreamReader) -> str:
    """Read one response; return its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    code = lines[0].split(b" ", 2)[1].decode()
    length = 0
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        lowered = name.strip().lower()
        if lowered == b"content-length":
            length = int(value.strip())
        elif lowered == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return code


async def _load(
    url: str,
    bodies: Sequence[bytes],
    concurrency: int,
    duration_s: float,
    rate: float | None,
    token: str | None,
    timeout_s: float,
    stop: threading.Event | None,
) -> LoadResult:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = [_request_bytes(f"{host}:{port}", parts.path or "/", b, token) for b in bodies]
    result = LoadResult()
    opened = await asyncio.gather(
        *(asyncio.open_connection(host, port) for _ in range(concurrency)), return_exceptions=True
    )
    start = time.perf_counter()
    end = start + duration_s
    counter = iter(range(10**12))
    interval = 1.0 / rate if rate else 0.0

    async def worker(connection: object) -> None:
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        if isinstance(connection, tuple):
            reader, writer = connection
        while True:
            n = next(counter)
            due = start + n * interval if rate else time.perf_counter()
            if due >= end or (stop is not None and stop.is_set()):
                break
            if rate and due > time.perf_counter():
                await asyncio.sleep(due - time.perf_counter())
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                assert reader is not None
                writer.write(requests[n % len(requests)])
                code = await asyncio.wait_for(_answer(reader), timeout_s)
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError):
                result.failed += 1
                result.codes["error"] += 1
                if writer is not None:
                    writer.close()
                reader = writer = None
                continue
            result.codes[code] += 1
            if code == "200":
                result.latencies_ms.append((time.perf_counter() - due) * 1000)
            else:
                result.failed += 1
        if writer is not None:
            writer.close()

    await asyncio.gather(*(worker(connection) for connection in opened))
    result.elapsed_s = time.perf_counter() - start
    return result


def run_load(
    url: str,
    bodies: Sequence[bytes],
    *,
    concurrency: int = 1,
    duration_s: float = 5.0,
    rate: float | None = None,
    token: str | None = None,
    timeout_s: float = 10.0,
    stop: threading.Event | None = None,
) -> LoadResult:
    """POST ``bodies`` (round robin) to ``url`` for ``duration_s`` or until ``stop`` is set."""
    return asyncio.run(_load(url, bodies, concurrency, duration_s, rate, token, timeout_s, stop))
