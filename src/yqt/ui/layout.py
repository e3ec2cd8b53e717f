"""What every screen is made of: the view, wrapped text blocks, the result block and table helpers."""

from __future__ import annotations

import io
import textwrap
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

#
# Every renderer ends with the result block: PASSED/FAILED/OK, what was made and where. Text is
# wrapped here at word boundaries (never inside a word, so paths and names stay whole); table columns
# use ellipsis, not fold, so a cell that cannot fit is shortened visibly rather than split mid-word.


@dataclass(frozen=True)
class View:
    width: int = 80
    verbose: bool = False


def shown(path: Any) -> str:
    """A path as the user would type it: relative to the working folder when inside it."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(p)


def status_word(passed: bool | None) -> str:
    return {True: "[bold green]PASSED[/]", False: "[bold red]FAILED[/]", None: "[bold]OK[/]"}[passed]


def wrapped(text: str, width: int, indent: str = "", hanging: str | None = None) -> list[str]:
    """Plain text wrapped at spaces only: a word longer than the line gets a line of its own, whole."""
    lines = textwrap.wrap(
        text, width=max(width, 20), initial_indent=indent, subsequent_indent=indent if hanging is None else hanging,
        break_long_words=False, break_on_hyphens=False,
    )  # fmt: skip
    return lines or [indent]


class Block:
    """Lines of text already wrapped to the view's width; rich prints them as they are."""

    def __init__(self, view: View) -> None:
        self.view = view
        self.lines: list[Text] = []

    def line(self, markup: str = "") -> Block:
        self.lines.append(Text.from_markup(markup))
        return self

    def para(self, text: str, indent: str = "", hanging: str | None = None, style: str = "") -> Block:
        for ln in wrapped(text, self.view.width, indent, hanging):
            self.lines.append(Text(ln, style=style))
        return self

    def pairs(self, rows: Sequence[tuple[str, str]], indent: str = "  ") -> Block:
        """``label  value`` rows, values wrapped under themselves."""
        if not rows:
            return self
        pad = max(len(label) for label, _ in rows) + 2
        for label, value in rows:
            head = f"{indent}{label}:".ljust(len(indent) + pad)
            self.para(value, indent=head, hanging=" " * len(head))
        return self

    def __rich_console__(self, console: Console, options: Any) -> Iterator[Any]:
        yield Text("\n").join(self.lines)  # printed with soft_wrap: already wrapped, never cropped


def result_block(view: View, passed: bool | None, headline: str, rows: Sequence[tuple[str, str]]) -> Block:
    """The last thing a command prints: the outcome, then what was made and where."""
    block = Block(view)
    status = status_word(passed)
    words = wrapped(headline, view.width - 8)
    block.line(f"{status}: {escape(words[0])}")
    for more in words[1:]:
        block.line(" " * 8 + escape(more))
    return block.pairs(rows)


def new_table(title: str | None = None, **kw: Any) -> Table:
    return Table(title=title, title_justify="left", **kw)


def add_col(table: Table, name: str, **kw: Any) -> None:
    table.add_column(name, overflow="ellipsis", **kw)


def fit_table(build: Callable[[Sequence[str]], Table], columns: Sequence[str], required: int, width: int) -> Table:
    """The table with as many of ``columns`` (most important first) as fit ``width`` unwrapped."""
    console = Console(width=10_000, file=io.StringIO())  # measure unclamped: rich caps a measure at its width
    for n in range(len(columns), required - 1, -1):
        table = build(columns[:n])
        if console.measure(table).maximum <= width:
            return table
    return build(columns[:required])


def yes_no(ok: bool, yes: str = "yes", no: str = "no") -> str:
    return f"[green]{yes}[/]" if ok else f"[red]{no}[/]"


def short_sha(sha: str | None, n: int = 12) -> str:
    return f"{sha[:n]}…" if sha else "-"


def mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def runtime_rows(info: Any) -> list[tuple[str, str]]:
    """``runtime  OpenVINO 2026.4.1 CPU bf16`` and, when read, how many convolutions ran as int8."""
    if info is None:
        return []
    from yqt.backends import runtime_label

    rows = [("runtime", runtime_label(info))]
    k = info.kernels
    if k is not None:
        split = ", ".join(f"{n} {p}" for p, n in k.precisions.items())
        rows.append(("convs", f"{k.int8_convs}/{k.convs} int8 ({split})"))
    return rows
