"""How much of a whole ``yqt eval`` process is not the model: the ratio to the sum of ``session.run``.

The float baseline is exported once; then ``yqt eval`` of the first 100 dev ids runs ``--repeats``
times as a whole process. Each time, its wall time less the imports (a process that only imports
what eval imports, timed the same way) is divided by the sum of its ``session.run`` calls (from
``timing`` in its JSON). Also printed: ``total_s`` (inside ``evaluate``) and the inference loop over
the same sum, and what each suspect on the path costs on the same 100 images, timed alone in this
process: hashing every scored image (the calibration-overlap check), the JPEG end-marker check,
reading and decoding, hashing and writing detections, the curves, the package versions.

    python benchmarks/eval_overhead.py [--images 100] [--repeats 3] [--versus OLD/src]

``--versus`` runs each repeat twice, alternating this checkout's yqt with the one under OLD/src (say a
``git archive`` of an older commit), so that both see the same load on a shared machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import coco_root_or_exit, export_baseline, timed_process, yqt

EVAL_IMPORTS = "import yqt.cli, yqt.ui, yqt.evaluate, yqt.runtime, onnxruntime, cv2, pycocotools.cocoeval"


def seconds(fn, repeats: int = 5) -> float:
    """Best of ``repeats`` wall times of ``fn()``."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def onnx_import_s() -> float:
    """What ``import onnx`` adds to a fresh process that has eval's other imports (best of 3)."""
    base = [sys.executable, "-c", "import onnxruntime, cv2, numpy"]
    return min(timed_process([*base[:2], base[2] + ", onnx"])[0] - timed_process(base)[0] for _ in range(3))


def suspects(coco: Path, images: int, metrics: dict) -> dict[str, float]:
    """Seconds each piece of eval's path outside ``session.run`` costs on the scored images."""
    from yqt.data import _jpeg_is_truncated, load_coco, read_image, select_image_ids
    from yqt.evaluate import eval_curves, run_cocoeval
    from yqt.runs import json_bytes, package_versions, sha256_file

    gt = load_coco(coco / "annotations" / "instances_val2017.json")
    ids = select_image_ids(gt.getImgIds(), images).ids
    paths = [coco / "val2017" / gt.imgs[i]["file_name"] for i in ids]
    blobs = [p.read_bytes() for p in paths]
    detections = json.loads(Path(metrics["detections_path"]).read_text())
    evaluator, _ = run_cocoeval(gt, detections, ids)
    return {
        "sha256 of every scored image (calibration overlap)": seconds(lambda: [sha256_file(p) for p in paths]),
        "JPEG end-marker check": seconds(lambda: [_jpeg_is_truncated(b) for b in blobs]),
        "read + decode every image": seconds(lambda: [read_image(p) for p in paths], 2),
        "detections to JSON + sha256": seconds(lambda: hashlib.sha256(json_bytes(detections, compact=True))),
        "curves from the accumulated COCOeval": seconds(lambda: eval_curves(evaluator, gt, "x")),
        "package versions": seconds(package_versions),
        "import onnx, in a fresh process": onnx_import_s(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--versus", type=Path, help="another yqt's src folder, run alternately with this one")
    args = parser.parse_args()
    coco = coco_root_or_exit()
    versions = {"this checkout": str(Path(__file__).resolve().parents[1] / "src")}
    if args.versus:
        versions[str(args.versus)] = str(args.versus.resolve())
    rows: dict[str, list] = {v: [] for v in versions}
    with tempfile.TemporaryDirectory(prefix="yqt-evalo-") as tmp:
        runs = Path(tmp) / "runs"
        onnx = export_baseline(runs)
        for r in range(args.repeats):
            for tag, (label, src) in enumerate(versions.items()):
                env = {"PYTHONPATH": src}
                t_imports, _ = timed_process([sys.executable, "-c", EVAL_IMPORTS], env)
                t_process, proc = timed_process(
                    yqt("eval", str(onnx), "--coco-root", str(coco), "--max-images", str(args.images), "--providers",
                        "cpu", "--json", "--runs-dir", str(runs), "--run", f"bench{r}-{tag}"),
                    env,
                )  # fmt: skip
                doc = json.loads(proc.stdout)
                rows[label].append((t_process, t_imports, doc["timing"]))
        costs = suspects(coco, args.images, doc)

    for label, measured in rows.items():
        print(f"yqt eval of {args.images} dev images, float baseline, ORT CPU, {label}:")
        ratios = []
        for t_process, t_imports, t in measured:
            run = t["session_run_s"]
            ratio = (t_process - t_imports) / run
            ratios.append(ratio)
            print(
                f"  process {t_process:5.2f} s  imports {t_imports:4.2f} s  total_s {t['total_s']:5.2f}  "
                f"loop {t['inference_wall_s']:5.2f}  session.run {run:5.2f}  |  (process-imports)/run {ratio:.3f}  "
                f"total/run {t['total_s'] / run:.3f}  loop/run {t['inference_wall_s'] / run:.3f}"
            )
        print(f"  median (process-imports)/run {statistics.median(ratios):.3f} (target <= 1.20)")
    print("alone, on the same images (best of several):")
    for what, s in costs.items():
        print(f"  {what:<52} {1000 * s:7.1f} ms")


if __name__ == "__main__":
    sys.exit(main())
