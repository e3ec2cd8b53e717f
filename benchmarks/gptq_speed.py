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

    python benchmarks/gptq_speed.py [--configs pure,4.5] [--calib-images N] [--skip-old] [--skip-cli]
"""

from __future__ import annotations

import argparse
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
    args = parser.parse_args()
    coco = coco_root_or_exit()
    train = coco / "train2017"

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
        for name in args.configs.split(","):
            target = None if name == "pure" else float(name)
            if target is not None and sweep is None:
                sweep = sensitivity(SensitivityConfig(coco_root=coco), run)
            cfg = QuantizeConfig(
                mode="w4a16", coco_root=coco, calib_images=args.calib_images, providers=("cpu",), device="cpu",
                parity_images=coco / "val2017", target_bits=target, sensitivity=sweep.json_path if target else None,
            )  # fmt: skip
            results = {}
            methods = [("new", gptq.apply_gptq)] + ([] if args.skip_old else [("old", gptq.brevitas_gptq_loop)])
            for method, solve in methods:
                t0 = time.perf_counter()
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
            if "old" in results:
                (t_new, d_new, h_new, _, i_new), (t_old, d_old, h_old, _, i_old) = results["new"], results["old"]
                same = sum(a == b for k in i_new for a, b in zip(i_new[k], i_old[k], strict=True))
                total = sum(len(v) for v in i_new.values())
                rows.append((name, t_old, t_new, d_old, d_new, h_old, h_new))
                print(f"w4a16 {name}: GPTQ {t_old:.0f} s -> {t_new:.0f} s ({t_old / t_new:.1f}x); dev {d_old:.4f} -> "
                      f"{d_new:.4f} ({(d_new - d_old) * 100:+.2f} pt); held-out {h_old:.4f} -> {h_new:.4f} "
                      f"({(h_new - h_old) * 100:+.2f} pt); integers shared {same / total:.1%}", flush=True)  # fmt: skip
        float_dev, float_held = scores(base.onnx.path)
        print(f"float: dev {float_dev:.4f}, held-out {float_held:.4f}")
        for name, t_old, t_new, d_old, d_new, h_old, h_new in rows:
            print(f"  {name}: {t_old / t_new:.1f}x, dev {d_new / float_dev:.1%} (old {d_old / float_dev:.1%}), "
                  f"held-out {h_new / float_held:.1%} (old {h_old / float_held:.1%})")  # fmt: skip

        if not args.skip_cli:
            elapsed, _ = timed_process(yqt("quantize", "--mode", "w4a16", "--runs-dir", tmp, "--run", "cli", "--json",
                                           "--coco-root", str(coco), "--device", "cpu"))  # fmt: skip
            rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
            print(f"yqt quantize --mode w4a16 (whole process): {elapsed:.0f} s, peak RSS {rss:.2f} GiB")


if __name__ == "__main__":
    main()
