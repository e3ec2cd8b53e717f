"""Where output goes: the one :class:`Output` of a command (stdout for the result, stderr for the rest)."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from yqt.records import (
    document,
)
from yqt.ui.layout import Block, View
from yqt.ui.pipeline import step_lines


class Output:
    def __init__(self, json_mode: bool = False, verbose: bool = False) -> None:
        self.json_mode = json_mode
        self.verbose = verbose
        self.err = Console(stderr=True, highlight=False)

    @property
    def out(self) -> Console:
        # Created per use so it follows sys.stdout (pytest and CliRunner swap it).
        return Console(file=sys.stdout, highlight=False, soft_wrap=False)

    def result(self, record: Any, render: Callable[[Any, View], Sequence[Any]]) -> None:
        """The result on stdout: one JSON document naming its schema, or tables ending in the outcome."""
        if self.json_mode:
            sys.stdout.write(json.dumps(document(record), indent=2) + "\n")
            sys.stdout.flush()
            return
        console = self.out
        for item in render(record, View(width=console.width, verbose=self.verbose)):
            console.print(item, soft_wrap=isinstance(item, Block))

    def warn(self, message: str) -> None:
        self.err.print(f"[yellow]warning:[/] {message}")

    def warn_all(self, messages: Sequence[str]) -> None:
        for message in messages:
            self.warn(message)

    def failure(self, message: str) -> None:
        self.err.print(f"[bold red]FAILED:[/] {message}")

    @contextlib.contextmanager
    def work(self) -> Iterator[None]:
        """Run library code with stray prints (Ultralytics, torch) sent to stderr, not into the result."""
        with contextlib.redirect_stdout(sys.stderr):
            yield

    @contextlib.contextmanager
    def progress(self, description: str, unit: str = "img/s") -> Iterator[Callable[[int, int], None]]:
        """A progress bar on stderr; yields a ``(done, total)`` callback for the library.

        The bar appears on the first update, so input rejected up front prints only its error.
        """
        bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.err,
        )
        task = bar.add_task(description, total=None, rate="", start=False)

        def update(done: int, total: int) -> None:
            if not bar.live.is_started:
                bar.start()
                bar.start_task(task)
            elapsed = bar.tasks[0].elapsed or 0.0
            rate = f"{done / elapsed:.1f} {unit}" if elapsed > 0 else ""
            bar.update(task, completed=done, total=total, rate=rate)

        with _stopped_at_exit(bar):
            yield update

    @contextlib.contextmanager
    def phases(self) -> Iterator[Callable[[str, int, int], None]]:
        """Progress for work in named phases (GPTQ, calibration): one bar per phase, with an ETA."""
        bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.err,
        )
        tasks: dict[str, Any] = {}

        def update(phase: str, done: int, total: int) -> None:
            if not bar.live.is_started:
                bar.start()
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done, total=total)

        with _stopped_at_exit(bar):
            yield update

    @contextlib.contextmanager
    def pipeline(self, total: int) -> Iterator[Any]:
        """One display for a whole pipeline: an overall bar over the steps, a bar for the current
        step's phase, and a line per finished step above them. Yields :class:`PipelineEvents`."""
        from yqt.pipeline import PipelineEvents

        bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.err,
        )
        overall = bar.add_task("pipeline", total=total)
        phase = bar.add_task("", total=None, visible=False)

        def started(name: str, index: int, count: int) -> None:
            if not bar.live.is_started:
                bar.start()
            # One width for every step, so the bar does not jump as names change length.
            bar.update(overall, description=f"step {index}/{count} {name}"[:36].ljust(36))
            bar.reset(phase, total=None, visible=False)

        def progress(what: str, done: int, count: int) -> None:
            bar.update(phase, description=f"  {what}"[:36].ljust(36), completed=done, total=count, visible=True)

        def finished(step: Any) -> None:
            bar.update(phase, visible=False)
            bar.advance(overall)
            for line in step_lines(step, View(width=self.err.width), reasons=step.status.value == "failed"):
                bar.console.print(line, soft_wrap=True)

        try:
            yield PipelineEvents(started=started, progress=progress, finished=finished)
        finally:
            if bar.live.is_started:
                bar.stop()


@contextlib.contextmanager
def _stopped_at_exit(bar: Progress) -> Iterator[None]:
    """A bar that started (it starts on the first update) is stopped however the work ends."""
    try:
        yield
    finally:
        if bar.live.is_started:
            bar.stop()
