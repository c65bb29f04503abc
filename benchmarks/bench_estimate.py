"""The run estimate against the run it estimates, idle and beside a busy process, side by side in one invocation:

    .venv/bin/python benchmarks/bench_estimate.py | tee benchmarks/results/bench_estimate-$(date +%F).txt
    .venv/bin/python benchmarks/bench_estimate.py --datasets airline-tweets --loads 0     # shorter

For each dataset and load level (0: idle; 1: one `python -c "while True: pass"` beside, started here):
1. the estimate the app's health check shows (lft_core.estimate_run_time: the run's checks, data, model, then a
   few timed training and evaluation calls at the data's own shapes), at the length the health check recommends;
2. then `python -m lft_core run --epochs 1` with that length, as a separate process, timed whole, its phases read
   from its report (report.json `estimate.measured`) and its epoch from its events (the last training progress
   event's elapsed time: the training calls of the epoch, without its validation pass).
Printed: estimated against measured, for the epoch and for the whole run, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def estimate(dataset: str, seed: int) -> tuple[dict, float]:
    from lft_core import RunConfig, check_dataset, estimate_run_time, tokenizer_for

    cfg = RunConfig(dataset=dataset, seed=seed, epochs=1)
    health = check_dataset(cfg, tokenizer_for("minilm"))
    length = health.recommended["max_length"]
    start = time.perf_counter()
    found = estimate_run_time(RunConfig(dataset=dataset, seed=seed, epochs=1, max_length=length))
    return {**found.to_dict(), "max_length": length, "calibration_s": found.calibration.seconds,
            "threads": found.calibration.threads}, time.perf_counter() - start


def measure(dataset: str, seed: int, max_length: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "LFT_ADAPTERS_DIR": tmp}
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "lft_core", "run", "--dataset", dataset, "--epochs", "1", "--seed",
                        str(seed), "--max-length", str(max_length), "--output", str(out)],
                       cwd=REPO, env=env, check=True, capture_output=True, timeout=7200)
        wall = time.perf_counter() - start
        from lft_core.report import RunReport

        report = RunReport.from_dict(json.loads((out / "report.json").read_text()))
        log = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines() if line.strip()]
    epoch = max((e["elapsed_s"] for e in log if e["event"] == "progress" and e["phase"] == "train"), default=None)
    return {"wall_s": wall, "phases": report.estimate.measured, "epoch_s": epoch,
            "threads": report.estimate.threads or None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["bbc-news", "airline-tweets"])
    parser.add_argument("--loads", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    import torch

    from lft_core.hardware import describe_machine

    print(f"# bench_estimate  {time.strftime('%Y-%m-%d %H:%M')}  torch {torch.__version__}")
    print(f"# machine: {describe_machine()}")
    rows = []
    for load in args.loads:
        from bench_threads import busy_loops

        loops = busy_loops(load)
        try:
            for dataset in args.datasets:
                est, est_wall = estimate(dataset, args.seed)
                got = measure(dataset, args.seed, est["max_length"])
                phases = {k: got["phases"].get(k) for k in ("baseline", "train", "save", "evaluate", "reference")}
                measured_total = sum(v for v in phases.values() if v)
                row = {"dataset": dataset, "load": load, "estimate": est, "estimate_wall_s": est_wall,
                       "measured": got, "measured_phases_total": measured_total}
                rows.append(row)
                print(f"\n{dataset}, load {load}: estimate took {est_wall:.1f} s (calibration "
                      f"{est['calibration_s']:.1f} s, {est['threads']} threads), max_length {est['max_length']}")
                for name in ("baseline", "train", "save", "evaluate", "reference"):
                    print(f"  {name:10s} estimated {est[name]:8.1f} s   measured {phases[name] or 0:8.1f} s")
                print(f"  epoch (training calls)   estimated {est['epoch']:8.1f} s   measured {got['epoch_s'] or 0:8.1f} s"
                      f"   ratio {est['epoch'] / got['epoch_s']:.2f}" if got["epoch_s"] else "  epoch: not measured")
                print(f"  phases total             estimated {est['total']:8.1f} s   measured {measured_total:8.1f} s"
                      f"   ratio {est['total'] / measured_total:.2f}")
                print(f"  whole process            estimated {est['total'] + est_wall:8.1f} s   measured "
                      f"{got['wall_s']:8.1f} s   ratio {(est['total'] + est_wall) / got['wall_s']:.2f}  "
                      f"(the estimate's own time stands in for loading and calibrating)", flush=True)
        finally:
            for loop in loops:
                loop.kill()
                loop.wait()
    print("\n" + json.dumps(rows, default=str))


if __name__ == "__main__":
    main()
