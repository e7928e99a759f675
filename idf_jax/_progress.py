"""A rich progress bar for long runs (chunked scans report completed steps)."""

from __future__ import annotations


class Progress:
    """``label [bar] done/total steps [status] time-remaining`` on the terminal.

    `label` names the run; `status` (None: no status column) is a short text that `update`
    may replace (e.g. the last epoch's losses); `enabled=False` makes every method a no-op
    (no terminal output, rich not imported). Usable as a context manager (closes on exit).
    """

    def __init__(
        self,
        total: int,
        done: int = 0,
        *,
        label: str = "sampling",
        status: str | None = None,
        enabled: bool = True,
    ):
        self._p = None
        if not enabled:
            return
        from rich.progress import BarColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as _Rich

        columns = [
            TextColumn(label),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} steps"),
        ]
        if status is not None:
            columns.append(TextColumn("{task.fields[status]}"))
        columns.append(TimeRemainingColumn())
        self._p = _Rich(*columns, transient=False)
        self._p.start()
        self._task = self._p.add_task(label, total=total, completed=done, status=status or "")

    def update(self, done: int | None = None, status: str | None = None):
        """Set the completed steps (None: unchanged) and, when given, the status text."""
        if self._p is None:
            return
        if status is None:
            self._p.update(self._task, completed=done)
        else:
            self._p.update(self._task, completed=done, status=status)

    def close(self):
        if self._p is not None:
            self._p.stop()
            self._p = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc):
        self.close()
