"""NVP predictions over HTTP: micro-batched service vs the same service without batching.

Starts `idf serve` (uvicorn, the packaged NVP model) on 127.0.0.1 as a separate process,
then drives it from this process with a real load generator: C keep-alive HTTP/1.1
connections (asyncio streams), each sending POST /v1/nvp/predict with one telemetry
history and waiting for the answer, for a fixed duration after a warm-up. Reports
predictions per second and latency percentiles, for

  batched:   service.batch_max_size=64, batch_max_wait_ms=2 (concurrent requests share
             one vmapped `NVPPredictor.predict_batch` call)
  unbatched: service.batch_max_size=1 (one call per request: the peer)

and, for reference, the library itself in this process (`predict_batch` of 64 series).
Server and load generator share the machine's cores, as they would on one 2-core box.

    python benchmarks/bench_service.py [--duration 10] [--connections 64]

Targets (issue 8): >= 1000 predictions/s with p99 < 50 ms on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "bench-key-0123456789"
HISTORY = [
    {"cpu": 0.70 + 0.01 * i, "power": 840.0 + 8 * i, "temp": 71.0 + 0.4 * i} for i in range(24)
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(batch_max_size: int, wait_ms: float, port: int, log):
    cfg = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    json.dump(
        {
            "service": {
                "batch_max_size": batch_max_size,
                "batch_max_wait_ms": wait_ms,
                "nvp_model_path": "default",
                "eil": False,
                "limits": {"max_body_bytes": 1 << 20},
            }
        },
        cfg,
    )
    cfg.close()
    env = dict(
        os.environ,
        IDF_API_KEYS=KEY,
        PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "idf_jax.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--config",
            cfg.name,
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited during start-up")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if b" 200 " in s.recv(200):
                    return proc
        except OSError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise TimeoutError("server did not become ready")


def request_bytes(port: int) -> bytes:
    body = json.dumps({"history": HISTORY}).encode()
    head = (
        f"POST /v1/nvp/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {KEY}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


async def connection(
    port: int, req: bytes, t_end: float, t_measure: float, lat: list, errors: list
):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while True:
            t0 = time.perf_counter()
            if t0 >= t_end:
                return
            writer.write(req)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            body = await reader.readexactly(length)
            t1 = time.perf_counter()
            if status != 200:
                errors.append((status, body[:200]))
            elif t0 >= t_measure:
                lat.append(t1 - t0)
    finally:
        writer.close()


async def load(port: int, connections: int, warmup: float, duration: float):
    req = request_bytes(port)
    lat: list[float] = []
    errors: list = []
    t_measure = time.perf_counter() + warmup
    t_end = t_measure + duration
    await asyncio.gather(
        *(connection(port, req, t_end, t_measure, lat, errors) for _ in range(connections))
    )
    return lat, errors


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def run_one(name, batch, wait_ms, args):
    port = free_port()
    with tempfile.TemporaryFile("w+") as log:
        proc = start_server(batch, wait_ms, port, log)
        try:
            lat, errors = asyncio.run(load(port, args.connections, args.warmup, args.duration))
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    if errors:
        print(f"  {name}: {len(errors)} errors, first: {errors[0]}")
    rate = len(lat) / args.duration
    row = dict(
        name=name,
        rate=rate,
        p50=1e3 * pct(lat, 0.50),
        p99=1e3 * pct(lat, 0.99),
        mean=1e3 * statistics.fmean(lat) if lat else float("nan"),
        n=len(lat),
        errors=len(errors),
    )
    print(
        f"  {name:10s} {rate:9.0f} pred/s   p50 {row['p50']:6.1f} ms   p99 {row['p99']:6.1f} ms"
        f"   ({row['n']} requests, {row['errors']} errors)"
    )
    return row


def library_reference(reps: int = 50):
    from idf_jax.nvp import NVPPredictor

    p = NVPPredictor(cache_size=0)
    hs = [HISTORY] * 64
    p.predict_batch(hs)
    t0 = time.perf_counter()
    for _ in range(reps):
        p.predict_batch(hs)
    dt = (time.perf_counter() - t0) / reps
    return 64 / dt


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--connections", type=int, default=64)
    args = ap.parse_args()
    print(
        f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}, "
        f"{args.connections} connections, {args.duration:.0f} s measured after {args.warmup:.0f} s warm-up"
    )
    lib = library_reference()
    print(f"  library   {lib:9.0f} pred/s   (in-process predict_batch of 64, no HTTP)")
    b = run_one("batched", 64, 2.0, args)
    u = run_one("unbatched", 1, 0.0, args)
    print(
        f"batched / unbatched throughput: {b['rate'] / u['rate']:.2f}x; "
        f"p99 ratio (unbatched / batched): {u['p99'] / b['p99']:.2f}x"
    )
    ok = b["rate"] >= 1000 and b["p99"] < 50
    print(f"target (>= 1000 pred/s, p99 < 50 ms): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
