"""Rich rendering: the only module that imports rich.

One :class:`Output` decides where things go. The result goes to stdout, as tables or, with
``--json``, as exactly one JSON document. Progress, warnings and hints go to stderr, so JSON
output is never polluted.
"""

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
from rich.table import Table

from yqt.records import (
    DeviceChoice,
    EvalResult,
    ExportResult,
    GateReport,
    ProviderReport,
    QuantizeResult,
    SmokeResult,
    to_jsonable,
)


class Output:
    def __init__(self, json_mode: bool = False) -> None:
        self.json_mode = json_mode
        self.err = Console(stderr=True, highlight=False)

    @property
    def out(self) -> Console:
        # Created per use so it follows sys.stdout (pytest and CliRunner swap it).
        return Console(file=sys.stdout, highlight=False, soft_wrap=False)

    def result(self, record: Any, render: Callable[[Any], Sequence[Any]]) -> None:
        if self.json_mode:
            sys.stdout.write(json.dumps(to_jsonable(record), indent=2) + "\n")
            sys.stdout.flush()
            return
        console = self.out
        for item in render(record):
            console.print(item)

    def warn(self, message: str) -> None:
        self.err.print(f"[yellow]warning:[/] {message}")

    def warn_all(self, messages: Sequence[str]) -> None:
        for message in messages:
            self.warn(message)

    def note(self, message: str) -> None:
        self.err.print(message)

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


# ------------------------------------------------------------------------------------------ renderers


def _fmt_bool(ok: bool, yes: str = "yes", no: str = "no") -> str:
    return f"[green]{yes}[/]" if ok else f"[red]{no}[/]"


def device_choice_table(choice: DeviceChoice) -> Table:
    half = {None: "auto", True: "on", False: "off"}[choice.requested_half]
    table = Table(title=f"Export device (requested: --device {choice.requested_device}, --half {half})")
    for col in ("device", "precision", "outcome", "why"):
        table.add_column(col)
    colours = {"chosen": "green", "failed": "red", "skipped": "yellow"}
    for a in choice.attempts:
        table.add_row(a.device, a.precision, f"[{colours.get(a.outcome, 'white')}]{a.outcome}[/]", a.reason)
    return table


def providers_table(report: ProviderReport) -> Table:
    table = Table(title="Execution providers")
    for col in ("provider", "requested", "attempted", "actually used"):
        table.add_column(col)
    names = list(dict.fromkeys([*report.requested, *report.attempted, *report.used]))
    for name in names:
        table.add_row(
            name,
            _fmt_bool(name in report.requested, no="-"),
            _fmt_bool(name in report.attempted, no="[red]no[/]"),
            _fmt_bool(name in report.used, no="[red]no[/]"),
        )
    if report.notes:
        table.caption = "\n".join(report.notes)
    return table


def _model_cell(model: Any) -> str:
    head = f", {model.head} head" if model.head else ""
    return f"{model.arch} ({model.family or 'YOLO'}{head}; {model.source})"


def render_export(result: ExportResult) -> list[Any]:
    v = result.verification
    summary = Table(title="Float baseline export", show_header=False)
    summary.add_column("", style="bold")
    summary.add_column("", overflow="fold")
    summary.add_row("model", _model_cell(result.model))
    summary.add_row("weights sha256", result.model.sha256 or "- (random init from config)")
    if result.model.batchnorm:
        summary.add_row("BatchNorm", result.model.batchnorm)
    summary.add_row("onnx", str(result.onnx.path))
    summary.add_row("onnx sha256", result.onnx.sha256)
    summary.add_row("size", f"{result.onnx.size_bytes / 1e6:.2f} MB")
    summary.add_row("contract", _fmt_bool(result.contract.ok, result.contract.detail, result.contract.detail))
    summary.add_row(
        "PyTorch vs ORT",
        f"max |diff| {v.max_abs_diff:.3g} (confident rows {v.max_abs_diff_confident:.3g}, tol {v.tolerance:g}) "
        f"on {v.image.name} with {v.provider}",
    )
    return [device_choice_table(result.device_choice), summary]


def render_smoke(result: SmokeResult) -> list[Any]:
    summary = Table(title=f"Smoke: {result.onnx.path.name}", show_header=False)
    summary.add_column("", style="bold")
    summary.add_column("", overflow="fold")
    summary.add_row("image", str(result.image))
    summary.add_row("contract", _fmt_bool(result.contract.ok, result.contract.detail, result.contract.detail))
    summary.add_row("detections", f"{result.num_detections} with score >= {result.conf:g}")
    lat = result.latency
    summary.add_row(
        "latency", f"median {lat.median_ms:.1f} ms (mean {lat.mean_ms:.1f}, p90 {lat.p90_ms:.1f}, n={lat.n})"
    )
    summary.add_row("ran on", ", ".join(result.providers.used))
    for option in result.providers.session_options:
        summary.add_row("session option", option)
    dets = Table(title="Top detections")
    for col in ("class", "score", "box x1,y1,x2,y2 (px)"):
        dets.add_column(col)
    for d in result.top_detections:
        dets.add_row(d.class_name, f"{d.score:.3f}", ", ".join(f"{v:.0f}" for v in d.box_xyxy))
    return [providers_table(result.providers), summary, dets]


def render_eval(result: EvalResult) -> list[Any]:
    metrics = Table(title=f"COCO bbox: {result.name} on {result.num_images} images")
    metrics.add_column("metric")
    metrics.add_column("value", justify="right")
    for name, value in to_jsonable(result.metrics).items():
        metrics.add_row(name, f"{value:.4f}")
    info = Table(show_header=False)
    info.add_column("", style="bold")
    info.add_column("", overflow="fold")
    info.add_row("image ids sha256", result.image_ids_sha256)
    info.add_row("onnx sha256", result.onnx_sha256)
    if result.contract is not None:
        info.add_row("contract", result.contract.detail)
    if result.nms is not None:
        n = result.nms
        info.add_row("NMS", f"yqt ({n.implementation}), per class, IoU {n.iou:g}, conf {n.conf:g}, max {n.max_det}")
    info.add_row("providers requested", ", ".join(result.providers_requested))
    used = ", ".join(result.providers_used)
    fell_back = result.providers_used[:1] != result.providers_requested[:1]
    info.add_row("providers used", f"[yellow]{used}[/]" if fell_back else used)
    for note in result.provider_notes:
        info.add_row("", f"[yellow]{note}[/]")
    lat, t = result.latency, result.timing
    info.add_row("latency", f"median {lat.median_ms:.1f} ms, mean {lat.mean_ms:.1f}, p90 {lat.p90_ms:.1f}")
    info.add_row(
        "time",
        f"{t.total_s:.1f} s total, inference {t.inference_wall_s:.1f} s "
        f"(session.run {t.session_run_s:.1f} s"
        + (f", NMS {t.nms_s:.2f} s" if result.nms is not None else "")
        + f"), COCOeval {t.cocoeval_s:.1f} s",
    )
    if result.metrics_path:
        info.add_row("metrics", str(result.metrics_path))
    return [metrics, info]


def _bits_label(d: Any) -> str:
    return "float" if d.bits is None else f"int{d.bits}"


def layers_table(result: QuantizeResult) -> Table:
    """Layers grouped by what they got and why; exceptions (kept 8-bit or float) listed by name."""
    quantized = sum(d.quantized for d in result.layers)
    table = Table(title=f"Layers: {quantized} quantized ({result.mode}), {len(result.layers) - quantized} kept float")
    for col in ("layers", "weights", "why"):
        table.add_column(col, overflow="fold")
    groups: dict[tuple[str, str], list[Any]] = {}
    for d in result.layers:
        groups.setdefault((_bits_label(d), d.reason), []).append(d)
    # The mode's own rows collapse to a count; kept and float layers are the exceptions a user needs to see.
    for (bits, reason), rows in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        is_mode_default = reason.startswith((f"{result.mode}:", "--target-bits"))
        names = f"{len(rows)} layers" if is_mode_default else ", ".join(d.name for d in rows)
        style = "green" if bits != "float" else "yellow"
        table.add_row(names, f"[{style}]{bits}[/]", reason)
    return table


def mixed_precision_table(result: QuantizeResult) -> Table:
    m = result.mixed_precision
    table = Table(
        title=f"Mixed precision: {len(m.promoted)} layers at 8 bits, mean {m.mean_bits:.3f} bits "
        f"(target {m.target_bits:g}, all-4-bit {m.floor_bits:.3f})"
    )
    for col, justify in (("layer", "left"), ("rank", "right"), ("score", "right"), ("params", "right")):
        table.add_column(col, justify=justify, overflow="fold")
    for p in sorted(m.promoted, key=lambda p: (p.rank or 0, p.name)):
        table.add_row(p.name, str(p.rank), f"{p.score:.3g}", f"{p.params:,}")
    return table


def gate_table(gate: GateReport) -> Table:
    table = Table(title=f"Validation gate: {gate.target}")
    table.add_column("check")
    table.add_column("result")
    table.add_column("detail", overflow="fold")
    for c in gate.checks:
        table.add_row(c.name, _fmt_bool(c.ok, "pass", "FAIL"), c.detail)
    return table


def render_quantize(result: QuantizeResult) -> list[Any]:
    items: list[Any] = [layers_table(result)]
    if result.mixed_precision is not None:
        items.append(mixed_precision_table(result))
    items += [device_choice_table(result.device_choice), gate_table(result.gate)]
    if result.gate_opt is not None:
        items.append(gate_table(result.gate_opt))
    summary = Table(title=f"Quantize {result.mode}: {'passed' if result.passed else 'FAILED'}", show_header=False)
    summary.add_column("", style="bold")
    summary.add_column("", overflow="fold")
    for label, value in _quantize_rows(result):
        summary.add_row(label, value)
    items.append(summary)
    if result.smoke is not None:
        items.extend(render_smoke(result.smoke))
    return items


def _quantize_rows(result: QuantizeResult) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = [("model", _model_cell(result.model))]
    if result.mean_weight_bits is not None:
        rows.append(("mean weight bits", f"{result.mean_weight_bits:.2f} (parameter-weighted; float layers count 32)"))
    promoted = {p.name for p in result.mixed_precision.promoted} if result.mixed_precision else set()
    kept = [
        d for d in result.layers
        if d.name not in promoted and (d.bits is None or (d.bits == 8 and result.mode.startswith("w4")))
    ]  # fmt: skip
    if kept:
        rows.append(("kept 8-bit/float", "; ".join(f"{d.name}: {_bits_label(d)} ({d.reason})" for d in kept)))
    if result.storage is not None:
        rows.append(("weight storage", f"{result.storage.format}, opset {result.storage.opset}: {result.storage.note}"))
    if result.calibration is not None:
        c = result.calibration
        rows.append(("calibration", f"{len(c.images)} images from {c.folder} (sha256 {c.sha256[:12]}…)"))
    if result.activations is not None:
        a = result.activations
        fused = f"{a.int8_convs_fused} convs fused into int8 kernels by ORT CPU"
        if a.int8_convs_expected is not None:
            fused += f" ({a.int8_convs_expected} expected)"
        rows.append(("activations", f"int8, layout {a.layout}, {a.quantized_tensors} tensors calibrated; {fused}"))
        rows.append(("kept float", a.excluded_reason))
    if result.parity is not None:
        p = result.parity
        rows.append((
            "parity PyTorch vs ORT",
            _fmt_bool(p.passed, "", "") + f"{p.matched}/{p.reference_detections} detections matched "
            f"({p.matched_fraction:.1%}, {p.required_fraction:.0%} required) at score ≥ {p.score_threshold}, "
            f"IoU ≥ {p.iou_threshold} on {p.images} images ({p.provider})" + (f"; {p.note}" if p.note else ""),
        ))  # fmt: skip
    if result.onnx is not None:
        rows += [("onnx", str(result.onnx.path)), ("sha256", result.onnx.sha256)]
    if result.onnx_opt is not None:
        rows.append(("simplified", str(result.onnx_opt.path)))
    if result.size is not None:
        s = result.size
        rows.append((
            "size",
            f"{s.qcdq_bytes / 1e6:.2f} MB vs {s.float_bytes / 1e6:.2f} MB float: "
            f"{s.ratio:.2f}x smaller ({s.float_source})",
        ))  # fmt: skip
    times = {k: v for k, v in result.timings.items() if k in ("gptq_s", "calibration_s", "export_s", "total_s")}
    if times:
        rows.append(("time", ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in times.items())))
    rows += [("[red]failure[/]", f) for f in result.failures]
    return rows


def render_sensitivity(result: Any, top: int = 20) -> list[Any]:
    ranked = result.ranked()
    shown = ranked if top <= 0 else ranked[:top]
    probe = f"{result.bits}-bit weights" + (" + uint8 input" if result.act else "")
    table = Table(title=f"Sensitivity of {result.model.arch}: one layer at {probe}, {len(result.layers)} layers")
    for col, justify in (("rank", "right"), ("layer", "left"), ("score", "right"), ("params", "right"),
                         ("8-bit costs", "right")):  # fmt: skip
        table.add_column(col, justify=justify, overflow="fold")
    for r in shown:
        table.add_row(str(r.rank), r.name, f"{r.score:.3g}", f"{r.params:,}", f"{r.bytes_to_keep_8bit / 1024:.1f} KiB")
    items: list[Any] = [table]
    if result.verification is not None:
        items.append(verification_table(result.verification))
    info = Table(show_header=False, title="Sensitivity sweep")
    info.add_column("", style="bold")
    info.add_column("", overflow="fold")
    info.add_row("score", result.score)
    images = result.images
    info.add_row("images", f"{len(images.images)} from {images.folder} (sha256 {images.sha256[:12]}…)")
    t = result.timings
    where = ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in t.items() if k != "total_s")
    info.add_row("time", f"{t.get('total_s', 0.0):.1f} s: {where}")
    if result.json_path is not None:
        info.add_row("ranking", str(result.json_path))
    if result.plot_path is not None:
        info.add_row("chart", str(result.plot_path))
    if top > 0 and len(ranked) > top:
        info.add_row("rows", f"top {top} of {len(ranked)} (--top 0 shows all)")
    if result.verification is not None:
        info.add_row("check on labels", result.verification.verdict)
    return [*items, info]


def verification_table(check: Any) -> Table:
    table = Table(title=f"Proxy vs real mAP: float {check.float_mAP_50_95:.4f} on {check.images} labelled images")
    for col, justify in (("proxy rank", "right"), ("layer", "left"), ("mAP50-95", "right"),
                         ("drop (pt)", "right"), ("drop rank", "right")):  # fmt: skip
        table.add_column(col, justify=justify, overflow="fold")
    for v in check.layers:
        table.add_row(str(v.rank), v.name, f"{v.mAP_50_95:.4f}", f"{v.drop_pt:+.2f}", str(v.drop_rank))
    return table


_QDQ_STYLE = {"QuantizeLinear": "bold magenta", "DequantizeLinear": "bold cyan", "Clip": "bold yellow"}


def _minority_bit_widths(layers: Sequence[Any]) -> dict[int, list[str]]:
    """Module names of every weight bit width but the most common one, when a model mixes them
    (a --target-bits model: the 8-bit layers beside the 4-bit majority)."""
    groups: dict[int, list[str]] = {}
    for layer in layers:
        if layer.weight_quantized and layer.weight_bits is not None:
            groups.setdefault(layer.weight_bits, []).append(layer.module or layer.name)
    if len(groups) < 2:
        return {}
    majority = max(groups, key=lambda b: len(groups[b]))
    return {b: names for b, names in sorted(groups.items()) if b != majority}


def render_graph(report: Any) -> list[Any]:
    s = report.summary
    ops = Table(title=f"Op counts: {report.path.name} ({s.nodes} nodes, opset {report.opset})")
    ops.add_column("op")
    ops.add_column("count", justify="right")
    for op, n in sorted(report.op_counts.items(), key=lambda kv: (kv[0] not in _QDQ_STYLE, -kv[1], kv[0])):
        style = _QDQ_STYLE.get(op)
        ops.add_row(f"[{style}]{op}[/]" if style else op, str(n))
    summary = Table(title="Summary", show_header=False)
    summary.add_column("", style="bold")
    summary.add_column("", overflow="fold")
    if report.model:
        summary.add_row("model", report.model)
    if report.contract is not None:
        summary.add_row("output", report.contract.detail)
    summary.add_row("compute layers", f"{s.compute_layers} ({s.weight_layers} with weights)")
    summary.add_row("weights quantized", f"{s.quantized_layers}")
    summary.add_row("weights float", f"{s.float_layers}")
    by_bits: dict[str, int] = {}
    for layer in report.layers:
        if layer.weight_quantized:
            key = f"{layer.weight_bits}-bit {layer.weight_dtype}"
            by_bits[key] = by_bits.get(key, 0) + 1
    if by_bits:
        summary.add_row("weight bits", ", ".join(f"{k}: {n}" for k, n in sorted(by_bits.items())))
    for bits, modules in _minority_bit_widths(report.layers).items():
        summary.add_row(f"{bits}-bit layers", ", ".join(modules))
    summary.add_row("activations quantized", f"{s.act_quantized_layers} layer inputs")
    summary.add_row("detection head", f"{s.head_quantized_layers}/{s.head_layers} layers quantized")
    summary.add_row(
        "initializer bytes",
        f"int {s.int_initializer_bytes / 1e6:.2f} MB, float {s.float_initializer_bytes / 1e6:.2f} MB",
    )
    summary.add_row("sha256", report.sha256)
    title = "Layers" + (f" (only {report.only})" if report.only else "")
    layers = Table(title=title)
    for col in ("node", "module", "op", "weight", "bits", "granularity", "axis", "act quant (scale, zp)"):
        layers.add_column(col, overflow="fold")
    for layer in report.layers:
        module = (layer.module or "-") + (" [yellow](head)[/]" if layer.head else "")
        if not layer.has_weight:
            weight = "[dim]none (activation input)[/]"
        elif layer.weight_quantized:
            weight = f"[green]{layer.weight_dtype}[/]" + (" [red](fp32 stored)[/]" if layer.weight_stored_float else "")
        else:
            weight = f"[yellow]float ({layer.weight_dtype})[/]"
        act = f"yes ({layer.act_scale:.4g}, {layer.act_zero_point})" if layer.act_quantized else "no"
        layers.add_row(
            layer.name, module, layer.op_type, weight, str(layer.weight_bits or "-"), layer.granularity or "-",
            "-" if layer.axis is None else str(layer.axis), act,
        )  # fmt: skip
    items: list[Any] = [ops, summary, layers]
    if report.diff is not None:
        diff = Table(title=f"Differences vs {report.diff_against}")
        for col in ("node", "change", "before", "after"):
            diff.add_column(col, overflow="fold")
        for d in report.diff:
            diff.add_row(d.name, d.change, d.before, d.after)
        if not report.diff:
            diff.caption = "no per-layer differences"
        items.append(diff)
    return items


def _delta_cell(delta: float, ci: Any) -> str:
    colour = "green" if delta > 0 else "red" if delta < 0 else "white"
    text = f"[{colour}]{delta * 100:+.2f}[/]"
    if ci is not None:
        text += f" [dim][{ci[0] * 100:+.2f}, {ci[1] * 100:+.2f}][/]"
    return text


def render_compare(result: Any) -> list[Any]:
    from yqt.compare import TABLE_METRICS

    table = Table(title=f"Compare vs {result.baseline} (Δ in mAP points; [95% CI], {result.bootstrap} resamples)")
    for col in ("run", "model", "mode", "providers", *TABLE_METRICS, "latency ms", "onnx MB"):
        table.add_column(col, overflow="fold")
    for r in result.rows:
        cells = [
            r.label + (" [bold](baseline)[/]" if r.is_baseline else ""),
            r.model or "-",
            r.mode,
            ", ".join(p.removesuffix("ExecutionProvider") for p in r.providers_used),
        ]
        for m in TABLE_METRICS:
            md = r.metrics[m]
            cells.append(f"{md.value:.4f}" if r.is_baseline else f"{md.value:.4f}\n{_delta_cell(md.delta, md.ci95)}")
        cells += [f"{r.latency_median_ms:.1f}", f"{r.onnx_size_bytes / 1e6:.2f}"]
        table.add_row(*cells)
    prov = Table(title="Provenance")
    for col in ("run", "onnx sha256", "providers used", "images", "image ids sha256"):
        prov.add_column(col, overflow="fold")
    for r in result.rows:
        prov.add_row(
            r.label, r.onnx_sha256[:16], ", ".join(r.providers_used), str(r.num_images), r.image_ids_sha256[:16]
        )
    verdicts = Table(title="Verdict", show_header=False)
    verdicts.add_column("", style="bold")
    verdicts.add_column("", overflow="fold")
    for r in result.rows:
        if r.is_baseline:
            continue
        d = r.metrics["mAP_50_95"]
        ci = "CI excludes zero" if r.ci_excludes_zero else "CI includes zero (not distinguishable from noise)"
        if r.ci_excludes_zero is None:
            ci = "no CI"
        gate = ""
        if r.within_max_drop is not None:
            gate = " — [green]within --max-drop[/]" if r.within_max_drop else " — [red]below --max-drop[/]"
        verdicts.add_row(r.label, f"ΔmAP50-95 {d.delta * 100:+.2f} pt, {ci}{gate}")
    return [table, prov, verdicts]
