"""Block-sequential GPTQ against Brevitas' ``gptq_mode`` loop, in one process, on the same images.

For each configuration (w4a16 pure 4-bit; w4a16 --target-bits 4.5 with one sensitivity sweep shared
by both methods), both methods quantize yolov10n from the same calibration images (yqt's default:
the first 128 of coco2017-mini/train2017), and the script prints:

- the GPTQ phase time of each (``timings["gptq_s"]``) and the speed-up;
- ORT mAP50-95 on the dev set, first 100 ids, and on the held-out train2017 images that calibration
  never sees (the 81 after the first 128);
- the PyTorch fake-quant mAP of the new method's model on dev (ORT must equal it within 0.3 pt);
- how many integer weights the two methods' models share.

Then, in a child process: the whole ``yqt quantize --mode w4a16`` (default calibration) wall time
and peak RSS.

With ``--other-threads 1``, the new method again on torch's 1 thread: how many integers differ from
the default thread count's, and the mAP of each (GPTQ's thread dependence, through oneDNN's convs).

``--equivalence 16``: on the first 16 images, the share of the loop's integers that block-sequential
GPTQ gives with ``gptq_mode``'s own arithmetic (all of them), and with yqt's default arithmetic.
``--onednn-cost`` times the pure 4-bit GPTQ with oneDNN's convolutions on and off (off, the thread
count changes no integer: tests/integration/test_gptq.py).

    python benchmarks/gptq_speed.py [--configs pure,4.5] [--calib-images N] [--skip-old] [--skip-cli]
                                    [--other-threads 1] [--onednn-cost] [--equivalence N]
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import coco_root_or_exit, ort_map, timed_process, yqt
from lowbit_modes import torch_map


def held_out_ids(coco: Path, calib_names: set[str], folder: Path) -> list[int]:
    """train2017 ids of the labelled images that are not calibration images."""
    import json

    data = json.loads((coco / "annotations" / "instances_train2017.json").read_text())
    present = {p.name for p in folder.iterdir()}
    return sorted(i["id"] for i in data["images"] if i["file_name"] in present and i["file_name"] not in calib_names)


def equivalence(coco: Path, count: int) -> str:
    """Pure 4-bit on the first ``count`` images: the Brevitas loop, then block-sequential GPTQ with the
    loop's arithmetic (running float32 Hessian average, Brevitas' float32 solve, one image per
    forward), then with yqt's default; the share of integers each shares with the loop."""
    import copy

    import numpy as np

    from yqt.quant import gptq
    from yqt.quant.calibrate import select_calibration, torch_batches
    from yqt.quantize import prepare
    from yqt.records import QuantizeConfig

    cfg = QuantizeConfig(mode="w4a16", coco_root=coco, gptq=False, providers=("cpu",), device="cpu")
    base = prepare(cfg).module
    images = torch_batches(select_calibration(coco / "train2017", count)[0], 640)

    def solved(solve) -> dict:
        model = copy.deepcopy(base)
        solve(model)
        return {k: np.frombuffer(v, dtype=np.int8) for k, v in integers(model).items()}

    loop = solved(lambda m: gptq.brevitas_gptq_loop(m, images))
    default = solved(lambda m: gptq.apply_gptq(m, images))
    exact = solved(lambda m: gptq._below_8_bits(m, lambda: gptq.gptq_blockwise(m, images, loop_arithmetic=True)))

    def share(other: dict) -> str:
        same = sum(int((loop[k] == other[k]).sum()) for k in loop)
        layers = sum(not np.array_equal(loop[k], other[k]) for k in loop)
        return (
            f"{same / sum(v.size for v in loop.values()):.2%} of the integers ({layers} of {len(loop)} layers differ)"
        )

    return (f"pure 4-bit, {count} images: with gptq_mode's arithmetic the block order shares {share(exact)} with "
            f"the loop; the default arithmetic {share(default)}")  # fmt: skip


@contextlib.contextmanager
def torch_threads(n: int | None):
    """torch on ``n`` threads for the block (None: unchanged)."""
    import torch

    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def integers(module) -> dict[str, bytes]:
    from yqt.quant.layers import integer_weights, quantized_layers

    return {n: integer_weights(m)[0].tobytes() for n, m in quantized_layers(module).items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--configs", default="pure,4.5", help="comma list: 'pure' and/or target bits")
    parser.add_argument("--calib-images", type=int, default=None, help="default: yqt's (128 for GPTQ)")
    parser.add_argument("--max-images", type=int, default=100)
    parser.add_argument("--skip-old", action="store_true", help="time only the block-sequential GPTQ")
    parser.add_argument("--skip-cli", action="store_true", help="skip the whole-quantize child process")
    parser.add_argument("--onednn-cost", action="store_true", help="time GPTQ with oneDNN's convs off too")
    parser.add_argument("--equivalence", type=int, default=0, metavar="N",
                        help="integers vs the loop's on N images: gptq_mode's arithmetic, the default")  # fmt: skip
    parser.add_argument("--other-threads", default="", help="comma list: also run the new method at these torch "
                        "thread counts, and count the integers that differ")  # fmt: skip
    args = parser.parse_args()
    args.other_threads = [int(n) for n in args.other_threads.split(",") if n]
    coco = coco_root_or_exit()
    train = coco / "train2017"

    import torch

    from yqt.evaluate import evaluate
    from yqt.export import export_baseline
    from yqt.quant import gptq
    from yqt.quantize import prepare, quantize
    from yqt.records import EvalConfig, ExportConfig, QuantizeConfig, SensitivityConfig
    from yqt.runs import Run
    from yqt.sensitivity import sensitivity

    with tempfile.TemporaryDirectory(prefix="yqt-gptq-speed-") as tmp:
        run = Run.open(Path(tmp), "gptq")
        base = export_baseline(ExportConfig(device="cpu"), run)
        ids_file = Path(tmp) / "held_out_ids.txt"

        def scores(path: Path) -> tuple[float, float]:
            dev = ort_map(path, coco, args.max_images, run)
            cfg = EvalConfig(onnx=path, images_dir=train, annotations=coco / "annotations" / "instances_train2017.json",
                             image_ids_list=ids_file, providers=("cpu",))  # fmt: skip
            return dev, evaluate(cfg, run).metrics.mAP_50_95

        sweep = None
        rows = []
        for name in [c for c in args.configs.split(",") if c]:
            target = None if name == "pure" else float(name)
            if target is not None and sweep is None:
                sweep = sensitivity(SensitivityConfig(coco_root=coco), run)
            cfg = QuantizeConfig(
                mode="w4a16", coco_root=coco, calib_images=args.calib_images, providers=("cpu",), device="cpu",
                parity_images=coco / "val2017", target_bits=target, sensitivity=sweep.json_path if target else None,
            )  # fmt: skip
            results = {}
            methods = [("new", gptq.apply_gptq, None)]
            methods += [] if args.skip_old else [("old", gptq.brevitas_gptq_loop, None)]
            methods += [(f"new on {n} thread(s)", gptq.apply_gptq, n) for n in args.other_threads]
            for method, solve, threads in methods:
                t0 = time.perf_counter()
                with torch_threads(threads):
                    prepared = prepare(cfg, solve_gptq=solve)
                if not ids_file.exists():
                    names = {i.name for i in prepared.calibration.images}
                    ids = held_out_ids(coco, names, train)
                    ids_file.write_text("\n".join(map(str, ids)) + "\n")
                    print(f"calibration: {len(names)} images; held-out: {len(ids)} train2017 images", flush=True)
                ints = integers(prepared.module)
                torch_dev = torch_map(prepared.module, coco, args.max_images) if method == "new" else None
                result = quantize(cfg, run, prepared=prepared)
                elapsed = time.perf_counter() - t0
                assert result.passed, result.failures
                dev, held = scores(result.onnx.path)
                results[method] = (prepared.timings["gptq_s"], dev, held, torch_dev, ints)
                extra = f", PyTorch fake-quant dev {torch_dev:.4f}" if torch_dev is not None else ""
                gptq_s = prepared.timings["gptq_s"]
                print(f"w4a16 {name} {method}: GPTQ {gptq_s:.1f} s ({prepared.gptq_layers} layers), "
                      f"prepare+quantize {elapsed:.0f} s (incl. PyTorch scoring for new), ORT dev {dev:.4f}, "
                      f"held-out {held:.4f}{extra}", flush=True)  # fmt: skip
            for method, *_ in methods[1:]:
                if method.startswith("new on"):
                    other, main = results[method][4], results["new"][4]
                    differ = sum(a != b for k in main for a, b in zip(main[k], other[k], strict=True))
                    print(f"w4a16 {name}: {method} vs {torch.get_num_threads()}: {differ} of "
                          f"{sum(len(v) for v in main.values())} integer bytes differ; dev "
                          f"{results[method][1]:.4f} vs {results['new'][1]:.4f}, held-out {results[method][2]:.4f} "
                          f"vs {results['new'][2]:.4f}", flush=True)  # fmt: skip
            if "old" in results:
                (t_new, d_new, h_new, _, i_new), (t_old, d_old, h_old, _, i_old) = results["new"], results["old"]
                same = sum(a == b for k in i_new for a, b in zip(i_new[k], i_old[k], strict=True))
                total = sum(len(v) for v in i_new.values())
                rows.append((name, t_old, t_new, d_old, d_new, h_old, h_new))
                print(f"w4a16 {name}: GPTQ {t_old:.0f} s -> {t_new:.0f} s ({t_old / t_new:.1f}x); dev {d_old:.4f} -> "
                      f"{d_new:.4f} ({(d_new - d_old) * 100:+.2f} pt); held-out {h_old:.4f} -> {h_new:.4f} "
                      f"({(h_new - h_old) * 100:+.2f} pt); integers shared {same / total:.1%}", flush=True)  # fmt: skip
        if ids_file.exists():  # some config ran: float on the same images
            float_dev, float_held = scores(base.onnx.path)
            print(f"float: dev {float_dev:.4f}, held-out {float_held:.4f}")
            for name, t_old, t_new, d_old, d_new, h_old, h_new in rows:
                print(f"  {name}: {t_old / t_new:.1f}x, dev {d_new / float_dev:.1%} (old {d_old / float_dev:.1%}), "
                      f"held-out {h_new / float_held:.1%} (old {h_old / float_held:.1%})")  # fmt: skip

        if args.equivalence:  # the block order with gptq_mode's own arithmetic against the loop
            print(equivalence(coco, args.equivalence), flush=True)

        if args.onednn_cost:  # what thread-count invariance would cost: oneDNN's convs off
            cfg = QuantizeConfig(mode="w4a16", coco_root=coco, calib_images=args.calib_images, providers=("cpu",),
                                 device="cpu", parity_images=coco / "val2017")  # fmt: skip
            seconds = {}
            for onednn in (True, False):
                with torch.backends.mkldnn.flags(enabled=onednn):
                    seconds[onednn] = prepare(cfg).timings["gptq_s"]
            print(f"w4a16 pure, GPTQ with oneDNN {seconds[True]:.1f} s, without {seconds[False]:.1f} s "
                  f"({seconds[False] / seconds[True]:.2f}x)", flush=True)  # fmt: skip

        if not args.skip_cli:
            elapsed, _ = timed_process(yqt("quantize", "--mode", "w4a16", "--runs-dir", tmp, "--run", "cli", "--json",
                                           "--coco-root", str(coco), "--device", "cpu"))  # fmt: skip
            rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
            print(f"yqt quantize --mode w4a16 (whole process): {elapsed:.0f} s, peak RSS {rss:.2f} GiB")


if __name__ == "__main__":
    main()
