"""Rich rendering: the only module that imports rich.

One :class:`Output` decides where things go. The result goes to stdout, as tables or, with
``--json``, as exactly one JSON document. Progress, warnings and hints go to stderr, so JSON
output is never polluted.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from yqt.records import (
    METRIC_LABELS,
    DeviceChoice,
    EvalResult,
    ExportResult,
    ExportVerification,
    GateReport,
    ProviderReport,
    QuantizeResult,
    SmokeResult,
    document,
    mode_with_bits,
    signed,
    to_jsonable,
)


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

        try:
            yield update
        finally:
            if bar.live.is_started:
                bar.stop()

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

        try:
            yield update
        finally:
            if bar.live.is_started:
                bar.stop()

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


# ------------------------------------------------------------------------------------------ layout
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


def _status(passed: bool | None) -> str:
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
    status = _status(passed)
    words = wrapped(headline, view.width - 8)
    block.line(f"{status}: {escape(words[0])}")
    for more in words[1:]:
        block.line(" " * 8 + escape(more))
    return block.pairs(rows)


def _table(title: str | None = None, **kw: Any) -> Table:
    return Table(title=title, title_justify="left", **kw)


def _col(table: Table, name: str, **kw: Any) -> None:
    table.add_column(name, overflow="ellipsis", **kw)


def fit_table(build: Callable[[Sequence[str]], Table], columns: Sequence[str], required: int, width: int) -> Table:
    """The table with as many of ``columns`` (most important first) as fit ``width`` unwrapped."""
    console = Console(width=10_000, file=io.StringIO())  # measure unclamped: rich caps a measure at its width
    for n in range(len(columns), required - 1, -1):
        table = build(columns[:n])
        if console.measure(table).maximum <= width:
            return table
    return build(columns[:required])


def _fmt_bool(ok: bool, yes: str = "yes", no: str = "no") -> str:
    return f"[green]{yes}[/]" if ok else f"[red]{no}[/]"


def _short(sha: str | None, n: int = 12) -> str:
    return f"{sha[:n]}…" if sha else "-"


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


# ------------------------------------------------------------------------------------------ export, smoke


def device_choice_table(choice: DeviceChoice) -> Table:
    half = {None: "auto", True: "on", False: "off"}[choice.requested_half]
    table = _table(f"Export device (--device {choice.requested_device}, --half {half})")
    for col in ("device", "precision", "outcome", "why"):
        _col(table, col)
    colours = {"chosen": "green", "failed": "red", "skipped": "yellow"}
    for a in choice.attempts:
        table.add_row(a.device, a.precision, f"[{colours.get(a.outcome, 'white')}]{a.outcome}[/]", escape(a.reason))
    return table


def providers_table(report: ProviderReport) -> Table:
    table = _table("Execution providers")
    for col in ("provider", "requested", "attempted", "actually used"):
        _col(table, col)
    names = list(dict.fromkeys([*report.requested, *report.attempted, *report.used]))
    for name in names:
        table.add_row(
            name.removesuffix("ExecutionProvider"),
            _fmt_bool(name in report.requested, no="-"),
            _fmt_bool(name in report.attempted, no="no"),
            _fmt_bool(name in report.used, no="no"),
        )
    return table


def _provider_notes(view: View, report: ProviderReport) -> Block:
    block = Block(view)
    for note in report.notes:
        block.para(note, indent="  note: ", hanging="        ", style="yellow")
    return block


def _model_cell(model: Any) -> str:
    head = f", {model.head} head" if model.head else ""
    return f"{model.arch} ({model.family or 'YOLO'}{head}; {model.source})"


def _verification_line(v: ExportVerification) -> str:
    c = v.columns
    return (
        f"on {c.compared_rows} {c.rows} rows: boxes {c.box_diff_px:.3g} px (≤ {c.box_tolerance_px:g}), scores "
        f"{c.score_diff:.3g} (≤ {c.score_tolerance:g}), {c.class_mismatches} classes differ (0 allowed); "
        f"whole output max |diff| {v.max_abs_diff:.3g}; {v.image.name} with {v.provider}"
    )


def render_export(result: ExportResult, view: View) -> list[Any]:
    v = result.verification
    details = Block(view).pairs([
        ("model", _model_cell(result.model)),
        ("weights sha256", _short(result.model.sha256) if result.model.sha256 else "- (random init from config)"),
        *((("BatchNorm", result.model.batchnorm),) if result.model.batchnorm else ()),
        ("PyTorch vs ORT", _verification_line(v)),
        ("output contract", result.contract.detail),
    ], indent="")  # fmt: skip
    headline = f"float baseline exported on {result.device_choice.device} {result.device_choice.precision}"
    headline += ", verified against PyTorch" if result.passed else ", NOT verified against PyTorch"
    summary = result_block(view, result.passed, headline, [
        ("onnx", f"{shown(result.onnx.path)} ({_mb(result.onnx.size_bytes)}, sha256 {_short(result.onnx.sha256)})"),
    ])  # fmt: skip
    return [device_choice_table(result.device_choice), details, summary]


def render_smoke(result: SmokeResult, view: View) -> list[Any]:
    lat = result.latency
    dets = _table("Top detections")
    for col in ("class", "score", "box x1,y1,x2,y2 (px)"):
        _col(dets, col)
    for d in result.top_detections:
        dets.add_row(d.class_name, f"{d.score:.3f}", ", ".join(f"{v:.0f}" for v in d.box_xyxy))
    details = Block(view).pairs([
        ("image", shown(result.image)),
        ("output contract", result.contract.detail),
        ("expected", f"at least {result.min_detections} detections at score >= {result.conf:g}: {result.expectation}"
                     if result.min_detections else f"no number of detections: {result.expectation}"),
        *_runtime_rows(result.runtime),
        *(("session option", o) for o in result.providers.session_options),
    ], indent="")  # fmt: skip
    ran_on = ", ".join(p.removesuffix("ExecutionProvider") for p in result.providers.used)
    headline = (
        f"smoke of {result.onnx.path.name}: {result.num_detections} detections with score >= {result.conf:g}, "
        f"median {lat.median_ms:.1f} ms over {lat.n} runs on {ran_on}"
    )
    rows = [("failure", result.failure)] if result.failure else []
    return [providers_table(result.providers), _provider_notes(view, result.providers), dets, details,
            result_block(view, result.passed, headline, rows)]  # fmt: skip


# ------------------------------------------------------------------------------------------ bench


def _bench_table(result: Any, columns: Sequence[str]) -> Table:
    threads = result.config.threads
    table = _table(
        f"Latency side by side: {len(result.config.models)} model(s) x {len(result.config.runtimes)} runtime(s), "
        f"batch {result.config.batch}, {threads or 'default'} threads, {result.config.rounds} rounds"
    )
    for col in columns:
        _col(table, col, justify="left" if col in ("model", "runtime") else "right")
    for c in result.cells:
        k = c.runtime.kernels
        lo, hi = c.ratio_ci95
        cells = {
            "model": c.name,
            "runtime": f"{'OpenVINO' if c.runtime.runtime.value == 'openvino' else 'ORT'} {c.runtime.precision}",
            "int8 convs": f"{k.int8_convs}/{k.convs}" if k is not None else "-",
            "median ms": f"{c.median_ms:.1f}",
            "IQR ms": f"{c.iqr_ms:.1f}",
            "img/s": f"{c.throughput_ips:.1f}",
            "ratio": f"{c.ratio:.3f}",
            "95% CI": f"[{lo:.3f}, {hi:.3f}]",
        }
        table.add_row(*(cells[col] for col in columns))
    return table


BENCH_COLUMNS = ("model", "runtime", "median ms", "ratio", "int8 convs", "95% CI", "IQR ms", "img/s")


def render_bench(result: Any, view: View) -> list[Any]:
    table = fit_table(lambda cols: _bench_table(result, cols), BENCH_COLUMNS, 4, view.width)
    host = result.host
    details = Block(view).pairs([
        ("reference", f"{result.reference} (ratio < 1: faster)"),
        ("image", shown(result.image)),
        ("host", f"{host.cpu_count} CPUs, {host.cpu}; load {host.load_before[0]:.2f} before, "
                 f"{host.load_after[0]:.2f} after"),
        *((f"cell {c.index + 1}", f"{c.label}: {', '.join(c.session_options)}") for c in result.cells
          if view.verbose),
        *(("not run", s) for s in result.skipped),
    ], indent="")  # fmt: skip
    fastest = min(result.cells, key=lambda c: c.ratio)
    headline = (
        f"bench of {len(result.cells)} cell(s) in {result.seconds:.0f} s: fastest {fastest.label} at "
        f"{fastest.ratio:.3f}x the reference ({fastest.median_ms:.1f} ms)"
    )
    rows = [("bench", shown(result.bench_path))] if result.bench_path else []
    return [table, details, result_block(view, None, headline, rows)]


# ------------------------------------------------------------------------------------------ pipeline

_STEP_STYLE = {"done": "green", "reused": "cyan", "failed": "bold red", "skipped": "yellow"}


def step_lines(step: Any, view: View, reasons: bool = True) -> list[Text]:
    """``done    eval-yolov10n-w8a8   14.2 s`` and, under it, why it failed or was skipped."""
    status = step.status.value
    secs = f"{step.seconds:.1f} s" if status == "done" else ""
    head = Text(f"{status.upper() if status == 'failed' else status:<8}", style=_STEP_STYLE[status])
    name_width = max(view.width - 8 - 10, 20)
    head.append(f"{step.name:<{min(40, name_width)}} {secs:>8}".rstrip())
    lines = [head]
    for extra in (step.reason, step.note) if reasons else ():
        if extra:
            lines += [Text(ln) for ln in wrapped(extra, view.width, indent=" " * 8)]
    return lines


def render_pipeline(result: Any, view: View) -> list[Any]:
    steps = Block(view)
    steps.line("[bold]Steps[/]")
    for step in result.steps:
        steps.lines += step_lines(step, view)
    items: list[Any] = [steps]
    if result.compare:
        from yqt.report.collect import compare_from_json

        # The same table as yqt compare prints, from the comparison the pipeline saved.
        compared = compare_from_json(dict(result.compare))
        networks = len({r.model for r in compared.rows}) > 1
        items.append(fit_compare(compared, ("mAP_50_95", "mAP_50"), view.width, networks)[0])
    counts = ", ".join(
        f"{result.count(s)} {s.value}" for s in type(result.steps[0].status) if result.count(s)
    ) if result.steps else "no steps"  # fmt: skip
    headline = f"pipeline in run {result.run_id}: {counts}, {result.seconds:.1f} s"
    failed = [s.name for s in result.steps if s.status.value == "failed"]
    rows = [("run folder", shown(result.run_root))]
    if result.data is not None:
        rows.append(("data", result.data))
    if result.report is not None:
        rows.append(("report", shown(result.report)))
    if failed:
        rows.append(("failed", ", ".join(failed)))
    items.append(result_block(view, result.passed, headline, rows))
    return items


# ------------------------------------------------------------------------------------------ eval


def render_eval(result: EvalResult, view: View) -> list[Any]:
    metrics = _table(f"COCO bbox, {result.num_images} images (fractions, as pycocotools gives them)")
    _col(metrics, "metric")
    _col(metrics, "value", justify="right")
    for name, value in to_jsonable(result.metrics).items():
        metrics.add_row(name, f"{value:.4f}")
    lat, t = result.latency, result.timing
    used = ", ".join(p.removesuffix("ExecutionProvider") for p in result.providers_used)
    requested = ", ".join(p.removesuffix("ExecutionProvider") for p in result.providers_requested)
    details = Block(view).pairs([
        *_dataset_rows(result),
        ("image ids", f"{result.num_images}, sha256 {_short(result.image_ids_sha256)}"),
        ("onnx sha256", _short(result.onnx_sha256)),
        *((("contract", result.contract.detail),) if result.contract is not None else ()),
        *((("NMS", _nms_text(result.nms)),) if result.nms is not None else ()),
        ("providers", f"{used} (requested {requested})"),
        *_runtime_rows(result.runtime),
        *(("note", n) for n in result.provider_notes),
        ("latency", f"median {lat.median_ms:.1f} ms, mean {lat.mean_ms:.1f}, p90 {lat.p90_ms:.1f}"),
        ("time", f"{t.total_s:.1f} s total, inference {t.inference_wall_s:.1f} s (session.run "
                 f"{t.session_run_s:.1f} s{f', NMS {t.nms_s:.2f} s' if result.nms is not None else ''}), "
                 f"COCOeval {t.cocoeval_s:.1f} s"),
    ], indent="")  # fmt: skip
    m = result.metrics
    headline = f"scored {result.name} on {result.num_images} images: mAP50-95 {m.mAP_50_95:.4f}, mAP50 {m.mAP_50:.4f}"
    rows = [("metrics", shown(result.metrics_path))] if result.metrics_path else []
    return [metrics, details, result_block(view, None, headline, rows)]


def _dataset_rows(result: EvalResult) -> list[tuple[str, str]]:
    """Where a YOLO-format ground truth came from: the YAML, the root it resolved to, the split."""
    ds = result.dataset
    if ds is None:
        return []
    rows = [
        ("dataset", f"{ds.yaml_path.name}, split {ds.split}, {ds.split_images} images, {len(ds.names)} classes"),
        ("root", str(ds.root)),
    ]
    if ds.bad_label_files:
        rows.append(("bad labels", f"{len(ds.bad_label_files)} image(s) left out (--skip-bad-labels)"))
    if result.dropped_detections:
        rows.append(("not scored", f"{result.dropped_detections} detections of classes the dataset lacks"))
    return rows


def _runtime_rows(info: Any) -> list[tuple[str, str]]:
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


def _nms_text(n: Any) -> str:
    return f"yqt ({n.implementation}), per class, IoU {n.iou:g}, conf {n.conf:g}, max {n.max_det}"


# ------------------------------------------------------------------------------------------ quantize


def _bits_label(d: Any) -> str:
    return "float" if d.bits is None else f"int{d.bits}"


def layer_groups(result: QuantizeResult, most: int = 8) -> list[str]:
    """One line per (bits, reason) group, largest first. The mode's own group is a count; every other
    group is an exception and names its layers, e.g. ``1 kept float: model.23.dfl.conv (DFL ...)``.
    Past ``most`` groups (say, one per layer when each reason carries its own score) the rest are
    counted, and ``--verbose`` lists them."""
    groups: dict[tuple[str, str], list[Any]] = {}
    for d in result.layers:
        groups.setdefault((_bits_label(d), d.reason), []).append(d)
    lines = []
    for (bits, reason), rows in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        kinds = "convs" if all(d.kind == "Conv2d" for d in rows) else "layers"
        mode_prefix = f"{result.mode}: "
        if reason.startswith(mode_prefix):
            lines.append(f"{len(rows)} {kinds}: {bits} ({reason.removeprefix(mode_prefix)})")
            continue
        names = ", ".join(d.name for d in rows[:6]) + (f" and {len(rows) - 6} more" if len(rows) > 6 else "")
        what = "kept float" if bits == "float" else f"at {bits}"
        lines.append(f"{len(rows)} {what}: {names} ({reason})")
    if len(lines) > most:
        hidden = lines[most - 1 :]
        lines = [*lines[: most - 1], f"and {len(hidden)} more groups of layers (--verbose lists every layer)"]
    return lines


def layers_table(result: QuantizeResult) -> Table:
    """Every layer, for --verbose."""
    quantized = sum(d.quantized for d in result.layers)
    table = _table(f"Layers: {quantized} quantized ({result.mode}), {len(result.layers) - quantized} kept float")
    for col in ("layer", "shape", "weights", "why"):
        _col(table, col)
    for d in result.layers:
        style = "green" if d.bits is not None else "yellow"
        table.add_row(d.name, d.shape, f"[{style}]{_bits_label(d)}[/]", escape(d.reason))
    return table


def gate_table(gate: GateReport) -> Table:
    table = _table(f"Validation gate: {gate.target}")
    _col(table, "check")
    _col(table, "result")
    _col(table, "detail")
    for c in gate.checks:
        table.add_row(c.name, _fmt_bool(c.passed, "pass", "FAIL"), escape(c.detail))
    return table


def _gate_line(gate: GateReport) -> str:
    passed = sum(c.passed for c in gate.checks)
    failed = [f"{c.name} ({c.detail})" for c in gate.checks if not c.passed]
    text = f"{passed}/{len(gate.checks)} checks passed on {gate.target}"
    return text + (": FAILED " + "; ".join(failed) if failed else "")


def render_quantize(result: QuantizeResult, view: View) -> list[Any]:
    items: list[Any] = []
    if view.verbose:
        items.append(layers_table(result))
        if result.mixed_precision is not None:
            items.append(mixed_precision_table(result))
        items += [device_choice_table(result.device_choice), gate_table(result.gate)]
        if result.gate_opt is not None:
            items.append(gate_table(result.gate_opt))
    block = Block(view).line(f"[bold]Layers ({result.mode})[/]")
    for line in layer_groups(result):
        block.para(line, indent="  ", hanging="    ")
    block.line("[bold]Checks[/]").pairs(_check_rows(result))
    block.line("[bold]Details[/]" + ("" if view.verbose else " (all layers and checks: --verbose)"))
    block.pairs(_quantize_rows(result))
    items.append(block)
    if view.verbose and result.smoke is not None:
        items += render_smoke(result.smoke, view)[:-1]  # its tables; the quantize result block says the rest
    items.append(_quantize_result(result, view))
    return items


def _check_rows(result: QuantizeResult) -> list[tuple[str, str]]:
    rows = [("gate", _gate_line(result.gate))]
    if result.gate_opt is not None:
        rows.append(("gate -opt", _gate_line(result.gate_opt)))
    if result.parity is not None:
        p = result.parity
        rows.append((
            "parity",
            f"{p.counts()}, at score ≥ {p.score_threshold}, IoU ≥ {p.iou_threshold} "
            f"on {p.images} images ({p.provider.removesuffix('ExecutionProvider')})"
            + (f"; {p.note}" if p.note else ""),
        ))  # fmt: skip
    if result.smoke is not None:
        s = result.smoke
        ran_on = ", ".join(p.removesuffix("ExecutionProvider") for p in s.providers.used)
        rows.append(("smoke", f"{s.num_detections} detections on {s.image.name}, median {s.latency.median_ms:.1f} ms "
                              f"on {ran_on}" + ("" if s.passed else f": FAILED {s.failure}")))  # fmt: skip
    return rows


def _quantize_rows(result: QuantizeResult) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = [("model", _model_cell(result.model))]
    choice = result.device_choice
    rows.append(("exported on", f"{choice.device} {choice.precision}"))
    if result.mean_weight_bits is not None:
        rows.append(("mean weight bits", f"{result.mean_weight_bits:.2f} (parameter-weighted; float layers count 32)"))
    if result.mixed_precision is not None:
        rows.append(("mixed precision", _mixed_text(result.mixed_precision)))
    if result.storage is not None:
        rows.append(("weight storage", f"{result.storage.format}, opset {result.storage.opset}: {result.storage.note}"))
    if result.calibration is not None:
        c = result.calibration
        rows.append(("calibration", f"{len(c.images)} images from {shown(c.folder)} (sha256 {_short(c.sha256)})"))
    if result.activations is not None:
        a = result.activations
        fused = f"{a.int8_convs_fused} convs fused into int8 kernels by ORT CPU"
        if a.int8_convs_expected is not None:
            fused += f" ({a.int8_convs_expected} expected)"
        rows.append(("activations", f"int8, layout {a.layout}, {a.quantized_tensors} tensors calibrated; {fused}"))
        rows.append(("kept float", a.excluded_reason))
    if result.size is not None:
        s = result.size
        rows.append(("size", f"{_mb(s.qcdq_bytes)} vs {_mb(s.float_bytes)} float: {s.ratio:.2f}x smaller "
                             f"({s.float_source})"))  # fmt: skip
    times = {k: v for k, v in result.timings.items() if k in ("gptq_s", "calibration_s", "export_s", "total_s")}
    if times:
        threads = f" (torch on {result.torch_threads} threads)" if result.torch_threads else ""
        rows.append(("time", ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in times.items()) + threads))
    return rows


def _mixed_text(m: Any) -> str:
    top = sorted(m.promoted, key=lambda p: (p.rank or 0, p.name))
    shown_names = ", ".join(f"{p.name} (#{p.rank})" for p in top[:5]) + (" …" if len(top) > 5 else "")
    source = shown(m.sensitivity) if m.sensitivity else f"measured now (sha256 {_short(m.sensitivity_sha256)})"
    return (
        f"--target-bits {m.target_bits:g}: {len(m.promoted)} layers kept at 8 bits for a mean of {m.mean_bits:.3f} "
        f"bits (all 4-bit: {m.floor_bits:.3f}); most sensitive: {shown_names or 'none'}; ranking: {source}"
    )


def mixed_precision_table(result: QuantizeResult) -> Table:
    """The 8-bit layers --target-bits chose, with their sensitivity rank and score (for --verbose)."""
    m = result.mixed_precision
    table = _table(f"Kept at 8 bits by --target-bits {m.target_bits:g}: {len(m.promoted)} layers")
    for col in ("layer", "rank", "score", "params"):
        _col(table, col, justify="left" if col == "layer" else "right")
    for p in sorted(m.promoted, key=lambda p: (p.rank or 0, p.name)):
        table.add_row(p.name, str(p.rank), f"{p.score:.3g}", f"{p.params:,}")
    return table


def _quantize_result(result: QuantizeResult, view: View) -> Block:
    """Which file to ship and why the other exists; or why nothing was published."""
    if not result.passed or result.onnx is None:
        rows = [("failure", f) for f in result.failures]
        if result.onnx is not None:  # smoke runs on the published file, so only it can fail after publishing
            rows.append(("published", f"{shown(result.onnx.path)}, but its smoke check failed: do not ship it"))
        else:
            rows.append(("published", "nothing: a file that failed a check is never published"))
        return result_block(view, False, f"quantize {result.mode}", rows)
    rows = [("ship", f"{shown(result.onnx.path)} ({_mb(result.onnx.size_bytes)}, sha256 {_short(result.onnx.sha256)})")]
    if result.onnx_opt is not None:
        simplifier = result.config.simplifier.value if result.config is not None else "the simplifier"
        rows.append((
            "also", f"{shown(result.onnx_opt.path)}: the same model simplified by {simplifier}, for tools that "
                    "want fewer nodes; gated like the main file, but parity and smoke ran on the main file only",
        ))  # fmt: skip
    headline = f"quantize {result.mode}: gate, parity and smoke passed; evaluate and deploy the ship file"
    return result_block(view, True, headline, rows)


# ------------------------------------------------------------------------------------------ sensitivity

_SENSITIVITY_COLUMNS = ("rank", "layer", "score", "params", "8-bit costs")


def _sensitivity_table(result: Any, rows: Sequence[Any], columns: Sequence[str]) -> Table:
    probe = f"{result.bits}-bit weights" + (" + uint8 input" if result.act else "")
    table = _table(f"Sensitivity: one layer at a time at {probe}")
    for col in columns:
        _col(table, col, justify="left" if col == "layer" else "right")
    for r in rows:
        cells = {
            "rank": str(r.rank), "layer": r.name, "score": f"{r.score:.3g}", "params": f"{r.params:,}",
            "8-bit costs": f"{r.bytes_to_keep_8bit / 1024:.1f} KiB",
        }  # fmt: skip
        table.add_row(*(cells[c] for c in columns))
    return table


def verification_table(check: Any) -> Table:
    table = _table(f"Proxy vs real mAP: float {check.float_mAP_50_95:.4f} on {check.images} labelled images")
    for col in ("proxy rank", "layer", "mAP50-95", "drop pt", "drop rank"):
        _col(table, col, justify="left" if col == "layer" else "right")
    for v in check.layers:
        table.add_row(str(v.rank), v.name, f"{v.mAP_50_95:.4f}", signed(v.drop_pt), str(v.drop_rank))
    return table


def render_sensitivity(result: Any, view: View, top: int = 20) -> list[Any]:
    ranked = result.ranked()
    rows = ranked if top <= 0 else ranked[:top]
    table = fit_table(lambda cols: _sensitivity_table(result, rows, cols), _SENSITIVITY_COLUMNS, 3, view.width)
    items: list[Any] = [table]
    if result.verification is not None:
        items.append(verification_table(result.verification))
    t = result.timings
    where = ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in t.items() if k != "total_s")
    images = result.images
    details = Block(view).pairs([
        ("score", result.score),
        ("images", f"{len(images.images)} from {shown(images.folder)} (sha256 {_short(images.sha256)})"),
        ("time", f"{t.get('total_s', 0.0):.1f} s: {where}"),
        *((("rows", f"top {top} of {len(ranked)} (--top 0 shows all)"),) if 0 < top < len(ranked) else ()),
        *((("check on labels", result.verification.verdict),) if result.verification is not None else ()),
    ], indent="")  # fmt: skip
    made = [(label, shown(path)) for label, path in (("ranking", result.json_path), ("chart", result.plot_path))
            if path is not None]  # fmt: skip
    head = ", ".join(r.name for r in ranked[:3])
    headline = f"ranked {len(ranked)} layers of {result.model.arch}; most sensitive: {head}"
    return [*items, details, result_block(view, None, headline, made)]


# ------------------------------------------------------------------------------------------ inspect-graph

_QDQ_STYLE = {"QuantizeLinear": "bold magenta", "DequantizeLinear": "bold cyan", "Clip": "bold yellow"}
_LAYER_COLUMNS = ("node", "op", "weight", "bits", "granularity", "act quant (scale, zp)", "module", "axis")


def _minority_bit_widths(layers: Sequence[Any]) -> dict[int, list[str]]:
    """Module names of every weight bit width but the most common one, when a model mixes them
    (a --target-bits model: its 8-bit layers beside the 4-bit majority)."""
    from yqt.graph import module_path

    groups: dict[int, list[str]] = {}
    for layer in layers:
        if layer.weight_quantized and layer.weight_bits is not None:
            groups.setdefault(layer.weight_bits, []).append(module_path(layer.name))
    if len(groups) < 2:
        return {}
    majority = max(groups, key=lambda b: len(groups[b]))
    return {b: names for b, names in sorted(groups.items()) if b != majority}


def render_graph(report: Any, view: View) -> list[Any]:
    s = report.summary
    ops = _table(f"Op counts: {s.nodes} nodes")
    _col(ops, "op")
    _col(ops, "count", justify="right")
    for op, n in sorted(report.op_counts.items(), key=lambda kv: (kv[0] not in _QDQ_STYLE, -kv[1], kv[0])):
        style = _QDQ_STYLE.get(op)
        ops.add_row(f"[{style}]{op}[/]" if style else op, str(n))
    by_bits: dict[str, int] = {}
    for layer in report.layers:
        if layer.weight_quantized:
            key = f"{layer.weight_bits}-bit {layer.weight_dtype}"
            by_bits[key] = by_bits.get(key, 0) + 1
    summary = Block(view).pairs([
        *((("model", report.model),) if report.model else ()),
        *((("output", report.contract.detail),) if report.contract is not None else ()),
        ("opset", str(report.opset)),
        ("compute layers", f"{s.compute_layers} ({s.weight_layers} with weights)"),
        ("weights quantized", f"{s.quantized_layers}" + (
            " (" + ", ".join(f"{k}: {n}" for k, n in sorted(by_bits.items())) + ")" if by_bits else "")),
        *((f"{bits}-bit layers", ", ".join(names)) for bits, names in _minority_bit_widths(report.layers).items()),
        ("weights float", f"{s.float_layers}"),
        ("activations quantized", f"{s.act_quantized_layers} layer inputs"),
        ("detection head", f"{s.head_quantized_layers}/{s.head_layers} layers quantized"),
        ("initializers", f"int {_mb(s.int_initializer_bytes)}, float {_mb(s.float_initializer_bytes)}"),
    ], indent="")  # fmt: skip
    title = "Layers" + (f" (only {report.only})" if report.only else "")
    layers = fit_table(lambda cols: _graph_layers(report, title, cols), _LAYER_COLUMNS, 4, view.width)
    items: list[Any] = [ops, layers]
    if report.diff is not None:
        diff = _table(f"Differences vs {shown(report.diff_against)}")
        for col in ("node", "change", "before", "after"):
            _col(diff, col)
        for d in report.diff:
            diff.add_row(d.name, d.change, d.before, d.after)
        if not report.diff:
            diff.caption = "no per-layer differences"
        items.append(diff)
    headline = (
        f"{report.path.name}: {s.quantized_layers} of {s.weight_layers} weight layers quantized, "
        f"{s.act_quantized_layers} activation inputs quantized"
    )
    items += [summary, result_block(view, None, headline, [("model", f"{shown(report.path)} (sha256 "
                                                                      f"{_short(report.sha256)})")])]  # fmt: skip
    return items


def _graph_layers(report: Any, title: str, columns: Sequence[str]) -> Table:
    table = _table(title)
    for col in columns:
        _col(table, col)
    for layer in report.layers:
        if not layer.has_weight:
            weight = "[dim]none[/]"
        elif layer.weight_quantized:
            weight = f"[green]{layer.weight_dtype}[/]" + (" [red](fp32 stored)[/]" if layer.weight_stored_float else "")
        else:
            weight = f"[yellow]float ({layer.weight_dtype})[/]"
        cells = {
            "node": layer.name.strip("/"),
            "module": (layer.module or "-") + (" [yellow](head)[/]" if layer.head else ""),
            "op": layer.op_type,
            "weight": weight,
            "bits": str(layer.weight_bits or "-"),
            "granularity": (layer.granularity or "-").replace("_", "-"),
            "axis": "-" if layer.axis is None else str(layer.axis),
            "act quant (scale, zp)": f"{layer.act_scale:.4g}, {layer.act_zero_point}" if layer.act_quantized else "no",
        }
        table.add_row(*(cells[c] for c in columns))
    return table


# ------------------------------------------------------------------------------------------ compare

_LABEL_HEAD = "model"
_MIN_LABEL = 12  # below this a label is squeezed no further: columns go instead


@dataclass(frozen=True)
class _ComparePlan:
    metrics: tuple[str, ...]
    extras: tuple[str, ...]  # "lat ms", "size MB"
    # "ci": the first metric with Δ and CI, the others with Δ; "delta": all with Δ; "first": only the
    # first with Δ; "value": values alone
    detail: str
    label_width: int | None = None  # None: labels whole


def _metric_cells(rows: Sequence[Any], metric: str, with_delta: bool, with_ci: bool) -> list[Text]:
    """Value, Δ (points) and CI of one metric, padded so the parts line up down the column."""
    from yqt.compare import ci_text

    parts = []
    for r in rows:
        md = r.metrics.get(metric)
        if md is None:
            parts.append(("-", "", "", ""))
            continue
        delta = "" if r.is_baseline or not with_delta else signed(md.delta_pt)
        ci = "" if r.is_baseline or not with_ci else ci_text(md.ci95_pt)
        colour = "green" if md.delta_pt > 0 else "red" if md.delta_pt < 0 else ""
        parts.append((f"{md.value:.4f}", delta, ci, colour))
    dw = max(len(p[1]) for p in parts)
    cw = max(len(p[2]) for p in parts)
    cells = []
    for value, delta, ci, colour in parts:
        cell = Text(value.ljust(6))
        if dw:
            cell.append(" " + delta.rjust(dw), style=colour if delta else "")
        if cw:
            cell.append(" " + ci.ljust(cw), style="dim")
        cells.append(cell)
    return cells


def _compare_table(result: Any, plan: _ComparePlan, networks: bool) -> Table:
    from rich import box

    from yqt.compare import compare_labels, row_label, squeeze

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1))
    rows = result.rows
    labels = compare_labels(rows, plan.label_width) or [squeeze(row_label(r), plan.label_width or 1) for r in rows]
    columns: list[tuple[str, list[Any], str]] = [(_LABEL_HEAD, [Text(lb) for lb in labels], "left")]
    if networks:
        columns.append(("network", [Text(r.model or "-") for r in rows], "left"))
    columns.append(("mode", [Text(mode_with_bits(r.mode, r.mean_weight_bits)) for r in rows], "left"))
    for i, m in enumerate(plan.metrics):
        with_delta = plan.detail in ("ci", "delta") or (plan.detail == "first" and i == 0)
        with_ci = plan.detail == "ci" and i == 0
        columns.append((METRIC_LABELS[m], _metric_cells(rows, m, with_delta, with_ci), "left"))
    extra = {
        "lat ms": [Text(f"{r.latency_median_ms:.1f}") for r in rows],
        "size MB": [Text(f"{r.onnx_size_bytes / 1e6:.2f}") for r in rows],
    }
    columns += [(name, extra[name], "right") for name in plan.extras]
    for name, _, justify in columns:
        table.add_column(name, justify=justify, no_wrap=True, overflow="ellipsis")  # type: ignore[arg-type]
    for i in range(len(rows)):
        table.add_row(*(cells[i] for _, cells, _ in columns))
    return table


def _compare_plans(metrics: Sequence[str], extras: bool) -> Iterator[_ComparePlan]:
    """From the fullest table down: lose the size and latency columns, then the CI, then Δ (but the
    first metric's, in the first table), then metric columns from the end. Labels are squeezed before
    anything goes."""
    metrics = tuple(metrics)
    for detail in ("ci", "delta", "first", "value") if extras else ("ci", "delta", "value"):
        for kept in (("lat ms", "size MB"), ("lat ms",), ()) if extras else ((),):
            yield _ComparePlan(metrics, kept, detail)
    for n in range(len(metrics) - 1, 0, -1):
        yield _ComparePlan(metrics[:n], (), "value")


def fit_compare(
    result: Any, metrics: Sequence[str], width: int, networks: bool, extras: bool = True
) -> tuple[Table, _ComparePlan]:
    """The fullest compare table that fits ``width`` without wrapping, labels squeezed before columns go."""
    from yqt.compare import compare_labels, row_label

    console = Console(width=10_000, file=io.StringIO())
    longest = max(len(row_label(r)) for r in result.rows)
    plan = None
    for plan in _compare_plans(metrics, extras):
        table = _compare_table(result, plan, networks)
        if console.measure(table).maximum <= width:
            return table, plan
        bare = _compare_table(result, replace(plan, label_width=0), networks)
        room = width - console.measure(bare).maximum + len(_LABEL_HEAD)
        if room >= min(_MIN_LABEL, longest) and compare_labels(result.rows, room) is not None:
            plan = replace(plan, label_width=room)
            return _compare_table(result, plan, networks), plan
    assert plan is not None
    plan = replace(plan, label_width=_MIN_LABEL)
    return _compare_table(result, plan, networks), plan


def render_compare(result: Any, view: View) -> list[Any]:
    networks = len({r.model for r in result.rows}) > 1
    # Past six metric columns (--all), the mAPs and the ARs get a table each.
    groups = [result.columns[i : i + 6] for i in range(0, len(result.columns), 6)]
    base = next(r for r in result.rows if r.is_baseline)
    head = Block(view).para(
        f"Compare vs {base.short_label or base.label} (first row): mAP as fractions, Δ in mAP points, "
        f"[95% CI] from a paired bootstrap of {result.bootstrap} resamples"
        if result.bootstrap
        else f"Compare vs {base.short_label or base.label} (first row): mAP as fractions, Δ in mAP points "
        "(no CI: --bootstrap 0)",
        style="bold",
    )
    items: list[Any] = [head]
    missing: list[str] = []
    plans = [fit_compare(result, metrics, view.width, networks, extras=g == 0)[1] for g, metrics in enumerate(groups)]
    squeezed = [p.label_width for p in plans if p.label_width is not None]
    if squeezed:  # one label width, so the tables' labels read the same
        plans = [replace(p, label_width=min(squeezed)) for p in plans]
    for g, (metrics, plan) in enumerate(zip(groups, plans, strict=True)):
        items.append(_compare_table(result, plan, networks))
        missing += [METRIC_LABELS[m] for m in metrics if m not in plan.metrics]
        missing += [e for e in ("lat ms", "size MB") if e not in plan.extras and g == 0]
        if plan.detail != "ci" and g == 0:
            missing.append({"delta": "CI", "first": "Δ past the first metric", "value": "Δ"}[plan.detail])
        elif plan.detail == "value":
            missing.append(f"Δ of {METRIC_LABELS[metrics[0]]} to {METRIC_LABELS[metrics[-1]]}")
    notes = Block(view)
    if missing:
        notes.para(
            f"not shown at {view.width} columns: {', '.join(missing)}; widen the terminal, or use --markdown or --json",
            indent="  note: ", hanging="        ", style="yellow",
        )  # fmt: skip
    notes.pairs(_compare_details(result), indent="")
    from yqt.compare import compare_labels, row_label

    # Each verdict under the label its row has in the table.
    shown_as = compare_labels(result.rows, plans[0].label_width) or [row_label(r) for r in result.rows]
    verdicts = Block(view).line("[bold]Verdict[/]")
    for r, label in zip(result.rows, shown_as, strict=True):
        if not r.is_baseline:
            verdicts.para(f"{label.removesuffix(' (stale)')}: {r.verdict}", indent="  ", hanging="    ")
    for r, label in zip(result.rows, shown_as, strict=True):
        if r.is_baseline and r.stale:
            verdicts.para(f"{label.removesuffix(' (stale)')} (baseline): STALE: {r.stale_reason}.", indent="  ",
                          hanging="    ")  # fmt: skip
    return [*items, notes, verdicts, _compare_result(result, view)]


def _compare_details(result: Any) -> list[tuple[str, str]]:
    """What every row shares, said once; what differs, per row."""
    rows = result.rows
    details: list[tuple[str, str]] = []
    by_run: dict[str, list[str]] = {}
    for r in rows:
        by_run.setdefault(r.run_id or "(no run)", []).append(r.name)
    # The names whole, by run, at any width: each a word of its own, never split.
    details.append(("runs", "; ".join(f"{run}: {', '.join(names)}" for run, names in by_run.items())))
    networks = {r.model for r in rows}
    if len(networks) == 1 and next(iter(networks)):
        details.append(("network", next(iter(networks))))
    images = {(r.num_images, r.image_ids_sha256) for r in rows}
    if len(images) == 1:
        n, sha = next(iter(images))
        details.append(("images", f"{n}, ids sha256 {_short(sha)}"))
    else:
        details.append(("images", "; ".join(f"{r.short_label or r.label}: {r.num_images}, ids sha256 "
                                            f"{_short(r.image_ids_sha256)}" for r in rows)))  # fmt: skip
    providers = {", ".join(p.removesuffix("ExecutionProvider") for p in r.providers_used) for r in rows}
    if len(providers) == 1:
        details.append(("providers", next(iter(providers))))
    else:
        details.append(("providers", "; ".join(
            f"{r.short_label or r.label}: {', '.join(p.removesuffix('ExecutionProvider') for p in r.providers_used)}"
            for r in rows)))  # fmt: skip
    details.append(("columns", "lat ms: median latency per image; size MB: the ONNX file"))
    details += _latency_details(result)
    return details


def _latency_details(result: Any) -> list[tuple[str, str]]:
    """Where ``lat ms`` comes from (a bench, side by side, or each eval's own timing) and, for a
    bench, each model's latency against the baseline's with its CI over rounds."""
    note = getattr(result, "latency_note", "")
    if not note:
        return []
    rows = [("latency", note.removeprefix("latency: "))]
    ratios = [
        f"{r.short_label or r.label} {r.latency_ratio:.3f}x [{lo:.3f}, {hi:.3f}]"
        for r in result.rows
        if not r.is_baseline and r.latency_source == "bench" and r.latency_ratio is not None
        for lo, hi in [r.latency_ratio_ci95 or (r.latency_ratio, r.latency_ratio)]
    ]
    if ratios:
        rows.append(("x base", "; ".join(ratios)))
    return rows


def _compare_result(result: Any, view: View) -> Block:
    compared = [r for r in result.rows if not r.is_baseline]
    stale = [r.label for r in result.rows if r.stale]
    rows: list[tuple[str, str]] = []
    if stale:
        rows.append(("stale", ", ".join(stale) + ": a later eval of the model failed; rerun yqt eval"))
    for label, path in (("saved", result.saved), ("markdown", result.markdown), ("plot", result.plot)):
        if path is not None:
            rows.append((label, shown(path)))
    if result.max_drop_pt is None:
        headline = f"{len(compared)} evaluation(s) against {result.baseline}; nothing judged (no --max-drop)"
        return result_block(view, None, headline, rows)
    rule = f"ΔmAP50-95 ≥ {signed(-result.max_drop_pt)} pt (--max-drop {result.max_drop_pt:g})"
    below = [r.label for r in compared if r.within_max_drop is False]
    if below:
        headline = f"{len(below)} of {len(compared)} below the allowed {rule}: {', '.join(below)}"
    else:
        headline = f"{len(compared)} of {len(compared)} within the allowed {rule}"
    return result_block(view, result.passed, headline, rows)


# ------------------------------------------------------------------------------------------ report


_REPORT_COLUMNS = ("model", "Δ pt [95% CI]", "mAP50-95", "mode", "bits", "size", "latency", "provider")


def _report_table(result: Any, columns: Sequence[str]) -> Table:
    from yqt.report.model import cells

    table = _table(f"run {result.run_id}: one row per model")
    keys = {"model": "model", "mode": "mode", "bits": "bits", "mAP50-95": "map", "Δ pt [95% CI]": "delta",
            "size": "size", "latency": "latency", "provider": "provider"}  # fmt: skip
    for c in columns:
        _col(table, c, justify="left" if c in ("model", "mode", "provider") else "right")
    _col(table, "verdict")
    colour = {"PASS": "green", "FAIL": "red", "FAILED": "red"}
    for r in result.rows:
        text = cells(r)
        verdict = f"[bold {colour[r.verdict]}]{r.verdict}[/]" if r.verdict in colour else r.verdict
        if r.error:
            verdict += f": {escape(r.error)}"
        table.add_row(*(escape(text[keys[c]]) for c in columns), verdict)
    return table


def render_report(result: Any, view: View) -> list[Any]:
    table = fit_table(lambda cols: _report_table(result, cols), _REPORT_COLUMNS, 2, view.width)
    failed = [r.name for r in result.rows if r.status == "failed"]
    below = [r.name for r in result.rows if r.verdict == "FAIL"]
    parts = [f"report of {len(result.rows)} model(s) written"]
    if failed:
        parts.append(f"{len(failed)} failed ({', '.join(failed)})")
    if below:
        parts.append(f"{len(below)} below the allowed drop of {result.max_drop_pt:g} pt ({', '.join(below)})")
    source = "reused from the run" if result.compare_reused else "computed now"
    rows = [
        ("html", shown(result.index_html)),
        ("markdown", shown(result.markdown)),
        ("plots", f"{len(result.plots)} PNG(s) in {shown(Path(result.index_html).parent)}"),
    ]
    if result.compare_json is not None:
        rows.append(("CIs", f"{result.bootstrap} bootstrap resamples, {source}: {shown(result.compare_json)}"))
    return [table, result_block(view, result.passed, "; ".join(parts), rows)]
