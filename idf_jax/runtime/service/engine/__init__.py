"""The job engine: sampling, equilibrium and NVP training jobs in worker processes, under
wall-time and memory budgets, behind a bounded queue, recorded in a SQLite job table.

`JobEngine` (core.py) is the Python API the HTTP routes, the WebSocket and gRPC share;
`JobStore` (store.py) the job table; `WorkerProcess` (worker.py) one worker; tasks.py what
a worker runs for each job kind (train_task.py: the `train` kind).
"""

from .core import Budgets as Budgets
from .core import JobEngine as JobEngine
from .core import QueueFull as QueueFull
from .store import FINISHED as FINISHED
from .store import JobRecord as JobRecord
from .store import JobStatus as JobStatus
from .store import JobStore as JobStore
from .tasks import KINDS as KINDS

__all__ = [
    "FINISHED",
    "KINDS",
    "Budgets",
    "JobEngine",
    "JobRecord",
    "JobStatus",
    "JobStore",
    "QueueFull",
]
