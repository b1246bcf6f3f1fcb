"""Progress of long CLI work (export, backup, restore, keys rotate, purge-expired):
a `rich` bar when standard output is a terminal, nothing otherwise (scripts, cron,
systemd read only the result line).

`progress(description)` yields `step(done, total)`; total None draws a spinner.
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Step = Callable[[int, "int | None"], None]


def _quiet(_done: int, _total: int | None) -> None:
    return None


@contextmanager
def progress(description: str) -> Iterator[Step]:
    if not sys.stdout.isatty():
        yield _quiet
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    # transient: the bar goes once done, leaving the command's one result line
    with Progress(*columns, console=Console(file=sys.stdout), transient=True) as bar:
        task = bar.add_task(description, total=None)

        def step(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield step
