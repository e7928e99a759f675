"""NVP predictions over gRPC (KServe v2 ModelInfer) against HTTP (POST /v1/nvp/predict),
the same server, the same model and micro-batcher, the same load.

Starts `idf serve` with `service.grpc_port` (HTTP and gRPC in one process, one event loop,
the packaged NVP model, batch_max_size 64, batch_max_wait_ms 2) on 127.0.0.1, then drives
it from this process, one prediction per request/call, with the API key on every one:

  HTTP: `bench_service.load` (C keep-alive HTTP/1.1 connections, uvloop protocol)
  gRPC: a grpc.aio client, one HTTP/2 channel, C calls in flight

each in a closed loop (every client sends again as soon as it has its answer: capacity)
and an open loop at `--rate` calls/s (latency from when each call fell due, at most C in
flight, so queueing is charged). Server and load generator share the machine's cores.

    python benchmarks/bench_grpc.py [--duration 10] [--connections 64] [--rate 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

from bench_service import HISTORY, KEY, free_port, measure, timed_row

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def start_server(http_port: int, grpc_port: int, log) -> subprocess.Popen:
    """`idf serve` with HTTP on `http_port` and gRPC on `grpc_port`, once /readyz is 200."""
    cfg = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    service = {
        "batch_max_size": 64,
        "batch_max_wait_ms": 2.0,
        "nvp_model_path": "default",
        "eil": False,
        "grpc_port": grpc_port,
    }
    json.dump({"service": service}, cfg)
    cfg.close()
    env = dict(
        os.environ,
        IDF_API_KEYS=KEY,
        PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    cmd = [sys.executable, "-m", "idf_jax.runtime.cli", "serve", "--host", "127.0.0.1"]
    cmd += ["--port", str(http_port), "--config", cfg.name, "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited during start-up")
        try:
            with socket.create_connection(("127.0.0.1", http_port), timeout=1) as s:
                s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if b" 200 " in s.recv(200):
                    return proc
        except OSError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise TimeoutError("server did not become ready")


def infer_request(pb):
    req = pb.inference_pb2.ModelInferRequest(model_name="nvp")
    for ch in ("cpu", "power", "temp"):
        t = req.inputs.add(name=ch, datatype="FP32", shape=[1, len(HISTORY)])
        t.contents.fp32_contents.extend(r[ch] for r in HISTORY)
    return req


async def grpc_load(pb, port: int, connections: int, warmup: float, duration: float, rate: float):
    """Like `bench_service.load`, over gRPC: latencies in the measured window, errors, all
    answers, and the span they arrived in."""
    import grpc

    req = infer_request(pb)
    meta = (("authorization", f"Bearer {KEY}"),)
    lat: list[float] = []
    errors: list[str] = []
    count = [0, 0.0]  # answers, time of the last measured one
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        infer = pb.inference_grpc.GRPCInferenceServiceStub(channel).ModelInfer
        await infer(req, metadata=meta)
        t_start = time.perf_counter()
        t_measure, t_end = t_start + warmup, t_start + warmup + duration
        due: asyncio.Queue = asyncio.Queue()

        async def call(t0: float) -> None:
            try:
                await infer(req, metadata=meta)
            except grpc.aio.AioRpcError as e:
                errors.append(f"{e.code()}: {e.details()}")
                return
            t1 = time.perf_counter()
            count[0] += 1
            if t_measure <= t0 < t_end:
                lat.append(t1 - t0)
                count[1] = t1

        async def closed_worker() -> None:
            while (t := time.perf_counter()) < t_end:
                await call(t)

        async def open_worker() -> None:
            while (t0 := await due.get()) is not None:
                await call(t0)

        if rate:
            workers = [asyncio.create_task(open_worker()) for _ in range(connections)]
            k = 0
            while (t_due := t_start + k / rate) < t_end:
                now = time.perf_counter()
                while t_due <= now and t_due < t_end:
                    due.put_nowait(t_due)
                    k += 1
                    t_due = t_start + k / rate
                await asyncio.sleep(0.001)
            for _ in workers:
                due.put_nowait(None)
            await asyncio.gather(*workers)
        else:
            await asyncio.gather(*(closed_worker() for _ in range(connections)))
    return lat, errors, count[0], max(duration, count[1] - t_measure)


def grpc_measure(label, port, args, rate, pid):
    """One gRPC load run; prints and returns its row (the columns of `bench_service.measure`)."""
    from idf_jax.runtime.service.grpc.protos import generated

    pb = generated()  # imported (and compiled) before the clock starts
    return timed_row(
        label,
        pid,
        lambda: asyncio.run(
            grpc_load(pb, port, args.connections, args.warmup, args.duration, rate)
        ),
        unit="call",
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=10.0, help="seconds measured per run")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--connections", type=int, default=64, help="connections / calls in flight")
    ap.add_argument("--rate", type=float, default=1000.0, help="open-loop calls/s (0: skip)")
    args = ap.parse_args()
    print(
        f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}, "
        f"{args.connections} in flight, {args.duration:.0f} s measured after {args.warmup:.0f} s"
    )
    http_port, grpc_port = free_port(), free_port()
    rows = collections.OrderedDict()
    with tempfile.TemporaryFile("w+") as log:
        proc = start_server(http_port, grpc_port, log)
        try:
            rows["http closed"] = measure("HTTP, closed loop", http_port, args, 0.0, proc.pid)
            rows["grpc closed"] = grpc_measure("gRPC, closed loop", grpc_port, args, 0.0, proc.pid)
            if args.rate:
                rows["http open"] = measure(
                    f"HTTP, {args.rate:.0f}/s offered", http_port, args, args.rate, proc.pid
                )
                rows["grpc open"] = grpc_measure(
                    f"gRPC, {args.rate:.0f}/s offered", grpc_port, args, args.rate, proc.pid
                )
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    h, g = rows["http closed"], rows["grpc closed"]
    print(
        f"closed loop, gRPC / HTTP: throughput {g['rate'] / h['rate']:.2f}x, "
        f"p99 {g['p99'] / h['p99']:.2f}x, server CPU per prediction "
        f"{g['server_us'] / h['server_us']:.2f}x"
    )


if __name__ == "__main__":
    main()
