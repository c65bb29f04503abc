"""The health check's time per epoch against the epoch it estimates, side by side in one invocation:

    .venv/bin/python benchmarks/bench_estimate.py | tee benchmarks/results/bench_estimate.txt

For each dataset: the estimate the app shows after "Check dataset health" (lft_core.check_dataset with the
tokenizer, the defaults otherwise), then `python -m lft_core run --epochs 1` at the recommended max length, timed
from its train stage to its epoch event (training steps and the validation pass) from the run's events.jsonl."""

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


def estimate(dataset: str, seed: int) -> dict:
    from lft_core import RunConfig, check_dataset, tokenizer_for

    health = check_dataset(RunConfig(dataset=dataset, seed=seed), tokenizer_for("minilm"))
    return health.recommended


def measured_epoch(dataset: str, seed: int, recommended: dict) -> float:
    """Seconds from the train stage to the first epoch event of a 1-epoch default run."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "lft_core", "run", "--dataset", dataset, "--epochs", "1", "--seed", str(seed),
               "--max-length", str(recommended["max_length"]), "--output", f"{out}/run", "--no-tfidf-reference"]
        env = {**os.environ, "LFT_ADAPTERS_DIR": f"{out}/runs"}
        subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        events = [json.loads(line) for line in Path(f"{out}/run/events.jsonl").read_text().splitlines()]
    start = next(e["time"] for e in events if e["event"] == "stage" and e["stage"] == "train")
    return next(e["time"] for e in events if e["event"] == "epoch") - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="airline-tweets,bbc-news")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    import torch

    print(f"# bench_estimate  {time.strftime('%Y-%m-%d %H:%M')}  torch {torch.__version__}  cpus {os.cpu_count()}")
    from lft_core.health import TRAIN_EFFICIENCY, matmul_peak

    print(f"matmul peak the estimate uses: {matmul_peak() / 1e9:.0f} GFLOP/s; TRAIN_EFFICIENCY {TRAIN_EFFICIENCY}")
    print(f"{'dataset':16} {'max length':>10} {'batch':>6} {'estimate s':>11} {'measured s':>11} {'est/meas':>9}")
    for dataset in args.datasets.split(","):
        recommended = estimate(dataset, args.seed)
        seconds = measured_epoch(dataset, args.seed, recommended)
        print(f"{dataset:16} {recommended['max_length']:>10} {recommended['batch_size']:>6} "
              f"{recommended['epoch_seconds']:>11.1f} {seconds:>11.1f} {recommended['epoch_seconds'] / seconds:>9.2f}",
              flush=True)


if __name__ == "__main__":
    main()
