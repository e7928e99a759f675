"""Two local processes under `jax.distributed.initialize` running one sharded `idf.sample`.

Each process owns 2 CPU devices (4 global devices); the chain axis is sharded over all
four with CPU collectives (gloo). Process 0 gathers the result and checks it against a
single-process run with the same key.

    python experiments/distributed_cpu.py          # launches both processes, prints the check
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

CHAINS, STEPS, THIN = 16, 200, 4


def worker(pid: int, port: int) -> None:
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=pid)
    import jax.numpy as jnp
    import numpy as np
    from jax.experimental import multihost_utils

    import idf_jax as idf

    energy = lambda x: jnp.sum(x**4 - 2 * x**2)
    x0 = jax.random.normal(jax.random.key(0), (CHAINS, 3))
    trace = idf.sample(idf.mala(energy, 0.1), jax.random.key(1), x0, STEPS, thin=THIN)
    positions = multihost_utils.process_allgather(trace.positions, tiled=True)
    if pid == 0:
        np.save(os.environ["IDF_OUT"], np.asarray(positions))
        print(
            f"process 0: {jax.process_count()} processes, {len(jax.devices())} global devices, "
            f"positions {positions.shape} sharded over {len(trace.positions.sharding.device_set)} devices"
        )
    jax.distributed.shutdown()


def reference():
    import jax
    import jax.numpy as jnp
    import numpy as np

    import idf_jax as idf

    energy = lambda x: jnp.sum(x**4 - 2 * x**2)
    x0 = jax.random.normal(jax.random.key(0), (CHAINS, 3))
    trace = idf.sample(
        idf.mala(energy, 0.1), jax.random.key(1), x0, STEPS, thin=THIN, devices=jax.devices()[:1]
    )
    return np.asarray(trace.positions)


def main() -> int:
    import tempfile

    import numpy as np

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = os.path.join(tempfile.mkdtemp(), "positions.npy")
    env = dict(os.environ, IDF_OUT=out, JAX_PLATFORMS="cpu")
    procs = [
        subprocess.Popen([sys.executable, __file__, "--worker", str(i), str(port)], env=env)
        for i in range(2)
    ]
    codes = [p.wait(timeout=600) for p in procs]
    if any(codes):
        print(f"worker exit codes {codes}")
        return 1
    got, ref = np.load(out), reference()
    err = float(np.max(np.abs(got - ref)))
    print(f"max |two-process - one-process| = {err:.3g}")
    return 0 if err < 1e-5 else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(int(sys.argv[2]), int(sys.argv[3]))
    else:
        sys.exit(main())
