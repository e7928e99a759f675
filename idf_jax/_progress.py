"""A rich progress bar for long runs (chunked scans report completed steps)."""

from __future__ import annotations


class Progress:
    def __init__(self, total: int, done: int):
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self._p = Progress(
            TextColumn("sampling"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} steps"),
            TimeRemainingColumn(),
            transient=False,
        )
        self._p.start()
        self._task = self._p.add_task("sample", total=total, completed=done)

    def update(self, done: int):
        self._p.update(self._task, completed=done)

    def close(self):
        self._p.stop()
