"""What a rerun of ``yqt pipeline`` costs, measured as whole processes in one run:

1. the first run of ``--modes w8a16,w8a8 --max-images 100`` (every step runs);
2. the same command again (every step is reused: fingerprints and file hashes only);
3. the same with ``--max-images 50`` (only the evals, compare and report rerun).

Prints each wall time, the steps by status, and the rerun times as ratios to the first run.

    python benchmarks/pipeline_resume.py [--modes w8a16,w8a8] [--max-images 100]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import coco_root_or_exit, timed_process, yqt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="w8a16,w8a8")
    parser.add_argument("--max-images", type=int, default=100)
    args = parser.parse_args()
    coco = coco_root_or_exit()
    with tempfile.TemporaryDirectory(prefix="yqt-bench-pipeline-") as tmp:
        base = ["pipeline", "--modes", args.modes, "--coco-root", str(coco), "--run", "bench", "--runs-dir", tmp,
                "--json"]  # fmt: skip
        runs = [
            ("first run", [*base, "--max-images", str(args.max_images)]),
            ("same command", [*base, "--max-images", str(args.max_images)]),
            ("--max-images changed", [*base, "--max-images", str(args.max_images // 2)]),
        ]
        first = None
        print(f"{'run':<22} {'wall s':>8} {'× first':>8}  steps")
        for label, argv in runs:
            wall, proc = timed_process(yqt(*argv))
            doc = json.loads(proc.stdout)
            counts = Counter(s["status"] for s in doc["steps"])
            rerun = [s["name"] for s in doc["steps"] if s["status"] == "done"] if first is not None else []
            first = first or wall
            steps = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
            ran = f"; ran: {', '.join(rerun)}" if rerun else ""
            print(f"{label:<22} {wall:8.1f} {wall / first:8.3f}  {steps}{ran}")


if __name__ == "__main__":
    main()
