"""What ``--ray`` costs on one machine, and what N nodes would gain, measured as whole processes:

1. the pipeline serially, then with ``--ray`` (a local Ray instance), each in a fresh run: the
   overhead is the ``--ray`` wall over the serial wall (Ray's start-up included);
2. the critical path of the pipeline's step graph (export → quantize → smoke/eval → compare →
   report), from the serial run's measured step times, against their sum: the speed-up that enough
   nodes would give, since this machine has only a few cores.

    python benchmarks/ray_pipeline.py [--modes w8a16,w8a8] [--max-images 100]
    python benchmarks/ray_pipeline.py --from-pipeline-json RUN/pipeline.json   # step 2 only
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import coco_root_or_exit, timed_process, yqt


def critical_path(steps: list[dict]) -> tuple[float, float, list[str]]:
    """(longest dependency chain in seconds, sum of step seconds, that chain) of a pipeline.json's steps,
    by the dependencies ``--ray`` gives them: export; the sweep's ranking (``sensitivity-*``, from the
    weights alone); each quantize after the export (and a ``--target-bits`` one after the ranking);
    each model's smoke and eval after what made it; bench after every eval; compare after the bench;
    report after everything."""
    seconds = {s["name"]: float(s.get("seconds") or 0.0) for s in steps}
    names = list(seconds)
    quantizes = [n for n in names if n.startswith("quantize-")]
    finish: dict[str, tuple[float, list[str]]] = {}

    def after(name: str, needs: list[str]) -> None:
        start = max((finish[n] for n in needs if n in finish), default=(0.0, []), key=lambda x: x[0])
        finish[name] = (start[0] + seconds[name], [*start[1], name])

    def maker(name: str) -> str:  # smoke-/eval-<stem>: the step that made the model (longest label first)
        stem = f"-{name.split('-', 1)[1]}-"
        found = [q for q in quantizes if f"-{q.removeprefix('quantize-')}-" in stem]
        return max(found, key=len) if found else "export"

    for name in names:
        if name == "export" or name.startswith("sensitivity-"):
            after(name, [])
        elif name.startswith("quantize-"):
            ranking = [n for n in names if n.startswith("sensitivity-")] if name.endswith("bit") else []
            after(name, ["export", *ranking])
        elif name.startswith(("smoke-", "eval-")):
            after(name, [maker(name)])
        elif name == "bench":
            after(name, [n for n in names if n.startswith("eval-")])
        elif name == "compare":
            after(name, ["bench", *(n for n in names if n.startswith("eval-"))])
        elif name == "report":
            after(name, [n for n in names if n != "report"])
    best = max(finish.values(), key=lambda x: x[0])
    return best[0], sum(seconds.values()), best[1]


def report_critical_path(doc: dict) -> None:
    crit, total, chain = critical_path(doc["steps"])
    print(f"serial sum of steps {total:.1f} s; critical path {crit:.1f} s ({' → '.join(chain)})")
    print(f"speed-up with enough nodes (one step per node): {total / crit:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="w8a16,w8a8")
    parser.add_argument("--max-images", type=int, default=100)
    parser.add_argument("--from-pipeline-json", type=Path, default=None)
    args = parser.parse_args()
    if args.from_pipeline_json is not None:
        report_critical_path(json.loads(args.from_pipeline_json.read_text()))
        return
    coco = coco_root_or_exit()
    with tempfile.TemporaryDirectory(prefix="yqt-bench-ray-") as tmp:
        base = ["pipeline", "--modes", args.modes, "--coco-root", str(coco), "--max-images", str(args.max_images),
                "--runs-dir", tmp, "--json"]  # fmt: skip
        serial_s, proc = timed_process(yqt(*base, "--run", "serial"))
        serial_doc = json.loads(proc.stdout)
        ray_s, proc = timed_process(yqt(*base, "--run", "ray", "--ray"))
        ray_doc = json.loads(proc.stdout)
        same = [(s["name"], s["status"]) for s in serial_doc["steps"]] == [
            (s["name"], s["status"]) for s in ray_doc["steps"]
        ]
        print(f"pipeline --modes {args.modes} --max-images {args.max_images}")
        print(f"serial {serial_s:.1f} s; --ray {ray_s:.1f} s; overhead --ray/serial {ray_s / serial_s:.3f}")
        print(f"same steps and statuses: {same}")
        report_critical_path(serial_doc)


if __name__ == "__main__":
    main()
