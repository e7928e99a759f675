"""NVP predictions over HTTP: micro-batched service vs the same service without batching.

Starts `idf serve` (uvicorn, the packaged NVP model) on 127.0.0.1 as a separate process,
then drives it from this process with a real load generator: C keep-alive HTTP/1.1
connections over loopback sockets (a lean asyncio protocol on uvloop), each POST
/v1/nvp/predict carrying one telemetry history (one prediction per request, with the
Bearer key). Two loads per server, each for a fixed duration after a warm-up:

  closed loop: every connection sends its next request as soon as its answer arrives
               (capacity; latency is then connections / throughput, Little's law)
  open loop:   `--rate` requests/s fall due at fixed intervals, each on an idle connection
               or queued for the next free one; latency counts from the time a request fell
               due, so queueing caused by a slow server is charged (no coordinated omission)

for

  batched:   service.batch_max_size=64, batch_max_wait_ms=2 (concurrent requests share
             vmapped `NVPPredictor.predict_batch` calls)
  unbatched: service.batch_max_size=1 (one call per request: the peer)

and, for reference, the library itself in this process (`predict_batch` of 64 series).
Server and load generator share the machine's cores, as they would on one 2-core box (no
CPU pinning); the CPU each used is reported (cores busy, and CPU microseconds per request).

    python benchmarks/bench_service.py [--duration 10] [--connections 64] [--rate 1000]
    python benchmarks/bench_service.py --mixed [--duration 10] [--rate 1000]

Targets (issue 8): >= 1000 predictions/s with p99 < 50 ms on a 2-core machine.

`--mixed` (issue 18): one batched server; two sampling jobs (LJ13, 128 chains, submitted
with POST /v1/jobs) run in the job engine's worker processes while NVP predictions are
offered at `--rate` (open loop) and a probe thread hits /healthz and /readyz every 50 ms.
Targets: prediction p99 < 50 ms, every health probe < 100 ms, zero 5xx.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

try:
    import uvloop
except ImportError:  # the load generator then runs on the default asyncio loop
    uvloop = None

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "bench-key-Zt7qW2mX9cR4vB8nL1pK6sD3fH5jG0yA"  # >= 32 characters: weak keys are refused
HISTORY = [
    {"cpu": 0.70 + 0.01 * i, "power": 840.0 + 8 * i, "temp": 71.0 + 0.4 * i} for i in range(24)
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(batch_max_size: int, wait_ms: float, port: int, log, **extra):
    cfg = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    json.dump(
        {
            "service": {
                "batch_max_size": batch_max_size,
                "batch_max_wait_ms": wait_ms,
                "nvp_model_path": "default",
                "eil": False,
                "limits": {"max_body_bytes": 1 << 20},
                **extra,
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
            "idf_jax.runtime.cli",
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


class _Client(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: writes the request, reads the whole response
    (status line, headers, Content-Length body), records its latency, then asks `run` for
    its next request. Everything happens in protocol callbacks (no coroutine per request).

    Closed loop (`run["rate"]` 0): each connection sends its next request at once; latency
    is from write to the end of the response. Open loop (a rate): requests are due at fixed
    times (`schedule`); a due request takes an idle connection or waits for the next one
    to free up, and its latency runs from the time it was due, so a slow server is charged
    for the queueing it causes (no coordinated omission)."""

    def __init__(self, req: bytes, run: dict):
        self.req, self.run = req, run
        self.buf = b""
        self.t0 = 0.0
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.run["idle"].append(self)

    def send(self, t_due: float):
        self.t0 = t_due
        self.transport.write(self.req)

    def _next(self):
        run = self.run
        if run["rate"]:
            if run["backlog"]:
                self.send(run["backlog"].popleft())
            else:
                run["idle"].append(self)
        else:
            t = time.perf_counter()
            if t < run["t_end"]:
                self.send(t)
            else:
                run["idle"].append(self)

    def data_received(self, data):
        buf = self.buf + data
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            self.buf = buf
            return
        head = buf[:end]
        i = head.find(b"\r\ncontent-length:")
        if i < 0:
            i = head.lower().find(b"\r\ncontent-length:")
        j = head.find(b"\r\n", i + 17)
        length = int(head[i + 17 : j if j > 0 else len(head)])
        if len(buf) < end + 4 + length:
            self.buf = buf
            return
        t1 = time.perf_counter()
        run = self.run
        run["n"] += 1
        self.buf = buf[end + 4 + length :]
        status = int(head[9:12])
        if status != 200:
            run["errors"].append((status, buf[end + 4 : end + 4 + length][:200]))
        elif run["t_measure"] <= self.t0 < run["t_end"]:
            run["lat"].append(t1 - self.t0)
            run["t_last"] = t1
        self._next()

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_result(exc)


async def load(port: int, connections: int, warmup: float, duration: float, rate: float = 0.0):
    """`connections` keep-alive connections; closed loop (`rate` 0: one request in flight on
    each) or open loop (`rate` requests/s due at fixed intervals, at most `connections` in
    flight). Returns latencies of the requests due in the measured window (after `warmup`
    seconds), the errors, and the number of responses in all."""
    loop = asyncio.get_running_loop()
    req = request_bytes(port)
    run = dict(lat=[], errors=[], n=0, rate=rate, idle=collections.deque(), t_last=0.0)
    run["backlog"] = collections.deque()
    conns = [
        (await loop.create_connection(lambda: _Client(req, run), "127.0.0.1", port))[1]
        for _ in range(connections)
    ]
    t_start = time.perf_counter()
    run["t_measure"] = t_start + warmup
    run["t_end"] = t_end = run["t_measure"] + duration
    idle, backlog = run["idle"], run["backlog"]
    if rate:
        k = 0
        while True:  # issue every request that is due, then sleep about a millisecond
            now = time.perf_counter()
            while k < (now - t_start) * rate:
                t_due = t_start + k / rate
                if t_due >= t_end:
                    break
                if idle:
                    idle.popleft().send(t_due)
                else:
                    backlog.append(t_due)
                k += 1
            if t_start + k / rate >= t_end:
                break
            await asyncio.sleep(0.001)
    else:
        while idle:
            idle.popleft().send(time.perf_counter())
    while len(idle) < connections:  # wait for the answers still on their way
        await asyncio.sleep(0.01)
    for c in conns:
        c.transport.close()
    await asyncio.gather(*(c.done for c in conns))
    # throughput: measured answers over the time they took to arrive (at least `duration`;
    # longer when an open-loop backlog was still draining after the last request fell due)
    span = max(duration, run["t_last"] - run["t_measure"])
    return run["lat"], run["errors"], run["n"], span


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(label, port, args, rate, pid):
    """One load run against the server on `port`; prints and returns its row."""
    run = uvloop.run if uvloop is not None else asyncio.run
    return timed_row(
        label,
        pid,
        lambda: run(load(port, args.connections, args.warmup, args.duration, rate)),
        unit="request",
    )


def timed_row(label, pid, run_load, *, unit):
    """Run `run_load() -> (latencies, errors, calls, span_s)`, timing client and server CPU
    (server: process `pid`); print and return the row (rate, percentiles, CPU per `unit`)."""
    c0, s0, w0 = time.process_time(), cpu_seconds(pid), time.perf_counter()
    lat, errors, n_all, span = run_load()
    wall = time.perf_counter() - w0
    client_cpu, server_cpu = time.process_time() - c0, cpu_seconds(pid) - s0
    if errors:
        print(f"  {label}: {len(errors)} errors, first: {errors[0]}")
    row = dict(
        rate=len(lat) / span,
        p50=1e3 * pct(lat, 0.50),
        p99=1e3 * pct(lat, 0.99),
        mean=1e3 * statistics.fmean(lat) if lat else float("nan"),
        n=len(lat),
        errors=len(errors),
        client_cores=client_cpu / wall,
        server_cores=server_cpu / wall,
        server_us=1e6 * server_cpu / max(n_all, 1),
        client_us=1e6 * client_cpu / max(n_all, 1),
    )
    print(
        f"  {label:26s} {row['rate']:6.0f} pred/s  p50 {row['p50']:6.1f} ms  p99 {row['p99']:6.1f} ms"
        f"  ({row['n']} {unit}s, {row['errors']} errors)\n"
        f"  {'':26s} CPU: server {row['server_cores']:.2f} cores ({row['server_us']:.0f} us/{unit}),"
        f" load generator {row['client_cores']:.2f} cores ({row['client_us']:.0f} us/{unit})"
    )
    return row


def run_one(name, batch, wait_ms, args):
    """Start a server; closed-loop load (capacity), then open-loop load at `args.rate`."""
    port = free_port()
    with tempfile.TemporaryFile("w+") as log:
        proc = start_server(batch, wait_ms, port, log)
        try:
            closed = measure(f"{name}, closed loop", port, args, 0.0, proc.pid)
            opened = None
            if args.rate:
                opened = measure(
                    f"{name}, {args.rate:.0f}/s offered", port, args, args.rate, proc.pid
                )
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    return closed, opened


def _call(port: int, method: str, path: str, body=None):
    """One request with the key on a fresh connection: (status, body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {KEY}"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=headers)
    r = conn.getresponse()
    out = r.status, r.read()
    conn.close()
    return out


MIXED_JOB = {
    "capsule": "molecular.lennard_jones_cluster",
    "params": {"n": 13},
    "sampler": "mala",
    "chains": 128,
    "steps": 100_000,
    "thin": 100,
    "step_size": 1e-3,
    "temperature": 0.2,
}


def _wait_running(port: int, ids: list[str], timeout: float = 300.0) -> None:
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:  # both compiled and computing
        st = [json.loads(_call(port, "GET", f"/v1/jobs/{i}")[1]) for i in ids]
        if all(s["status"] == "running" and s["progress"] > 0 for s in st):
            return
        if any(s["status"] not in ("queued", "running") for s in st):
            raise RuntimeError(f"a sampling job ended early: {st}")
        time.sleep(0.5)
    raise TimeoutError("the sampling jobs did not start")


def run_mixed(args):
    """NVP load while two sampling jobs run; health probed throughout (see the module)."""
    port = free_port()
    probes: list[tuple[float, int]] = []
    stop = threading.Event()

    def probe():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while not stop.is_set():
            for path in ("/healthz", "/readyz"):
                t0 = time.perf_counter()
                conn.request("GET", path)
                r = conn.getresponse()
                r.read()
                probes.append((time.perf_counter() - t0, r.status))
            time.sleep(0.05)
        conn.close()

    with tempfile.TemporaryFile("w+") as log, tempfile.TemporaryDirectory() as state:
        proc = start_server(
            args.batch_size, args.wait_ms, port, log, state_dir=state, max_concurrent_jobs=2
        )
        try:
            ids = []
            for seed in (1, 2):
                job = {"kind": "sample", "payload": {**MIXED_JOB, "seed": seed}}
                status, body = _call(port, "POST", "/v1/jobs", job)
                if status != 202:
                    raise RuntimeError(f"job not accepted: {status} {body[:300]!r}")
                ids.append(json.loads(body)["id"])
            _wait_running(port, ids)
            th = threading.Thread(target=probe, daemon=True)
            th.start()
            row = measure(f"mixed, {args.rate:.0f}/s offered", port, args, args.rate, proc.pid)
            stop.set()
            th.join(timeout=30)
            st = [json.loads(_call(port, "GET", f"/v1/jobs/{i}")[1]) for i in ids]
            still = sum(s["status"] == "running" for s in st)
            progress = [round(s["progress"], 3) for s in st]
            for i in ids:
                _call(port, "DELETE", f"/v1/jobs/{i}")
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    lat = sorted(p[0] for p in probes)
    five = sum(1 for p in probes if p[1] >= 500)
    print(
        f"  health probes: {len(lat)}, p50 {1e3 * pct(lat, 0.5):.1f} ms, "
        f"p99 {1e3 * pct(lat, 0.99):.1f} ms, max {1e3 * lat[-1]:.1f} ms, {five} 5xx\n"
        f"  sampling jobs still running at the end: {still} of 2 (progress {progress})"
    )
    ok = row["p99"] < 50 and lat[-1] < 0.1 and five == 0 and row["errors"] == 0 and still == 2
    print(
        f"target (NVP p99 < 50 ms at {args.rate:.0f}/s offered while 2 sampling jobs run, "
        f"every health probe < 100 ms, zero 5xx): {'met' if ok else 'NOT met'}"
    )


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
    ap.add_argument("--duration", type=float, default=10.0, help="seconds measured per run")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument(
        "--rate", type=float, default=1000.0, help="open-loop offered requests/s (0: skip)"
    )
    ap.add_argument("--batch-size", type=int, default=64, help="service.batch_max_size")
    ap.add_argument("--wait-ms", type=float, default=2.0, help="service.batch_max_wait_ms")
    ap.add_argument("--only", choices=("batched", "unbatched"), help="run one mode")
    ap.add_argument(
        "--mixed", action="store_true", help="NVP load while two sampling jobs run (issue 18)"
    )
    args = ap.parse_args()
    print(
        f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}, "
        f"{args.connections} connections, {args.duration:.0f} s measured after "
        f"{args.warmup:.0f} s warm-up, load generator on "
        f"{'uvloop' if uvloop is not None else 'asyncio'} (no CPU pinning)"
    )
    if args.mixed:
        return run_mixed(args)
    lib = library_reference()
    print(f"  {'library':26s} {lib:6.0f} pred/s  (in-process predict_batch of 64, no HTTP)")
    if args.only != "unbatched":
        b, b_open = run_one("batched", args.batch_size, args.wait_ms, args)
    if args.only != "batched":
        u, u_open = run_one("unbatched", 1, 0.0, args)
    if args.only:
        return
    print(
        f"closed loop, batched / unbatched: throughput {b['rate'] / u['rate']:.2f}x, "
        f"p99 {u['p99'] / b['p99']:.2f}x lower"
    )
    if b_open is not None:
        ok = b["rate"] >= 1000 and b_open["rate"] >= 0.99 * args.rate >= 990 and b_open["p99"] < 50
        print(
            f"target (>= 1000 pred/s; p99 < 50 ms at {args.rate:.0f}/s offered): "
            f"{'met' if ok else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
