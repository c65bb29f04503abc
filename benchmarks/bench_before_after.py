"""`python -m lft_core run` from an earlier checkout against this one, alternating, in one invocation.

    git worktree add --detach /tmp/before <commit>
    .venv/bin/python benchmarks/bench_before_after.py --before /tmp/before --dataset bbc-news
    .venv/bin/python benchmarks/bench_before_after.py --before /tmp/before --dataset airline-tweets --epochs 1

Each run is its own process, started in its checkout's root (so `-m lft_core` imports that checkout's package),
with this venv's Python, a fresh runs folder (no cached base evaluation) and the same flags. Order alternates per
seed. Printed per run: whole-process wall time, the report's train and evaluation seconds, test accuracy, TF-IDF's
accuracy on the same split, peak RSS, and the training precision; then after/before ratios of the means.
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

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def run(checkout: Path, args, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "lft_core", "run", "--dataset", args.dataset, "--seed", str(seed),
               "--output", f"{out}/run", *(["--epochs", str(args.epochs)] if args.epochs else []), *args.extra]
        env = {**os.environ, "LFT_ADAPTERS_DIR": f"{out}/runs", "HF_HUB_OFFLINE": "1"}
        start = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=checkout, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                       timeout=7200)
        wall = time.perf_counter() - start
        # this checkout's reader: it reads the reports of every earlier one
        from lft_core.report import RunReport

        report = RunReport.from_dict(json.loads(Path(f"{out}/run/report.json").read_text()))
    timing, tfidf = report.timing, report.references.get("tfidf")
    nan = float("nan")
    return {"wall_s": wall, "train_s": timing.train_s,
            "eval_s": (timing.base_eval_s or 0) + (timing.finetuned_eval_s or 0),
            "accuracy": report.finetuned.scores["accuracy"],
            "tfidf": tfidf.scores.get("accuracy", nan) if tfidf else nan,
            "peak_rss_mb": report.peak_memory_mb, "precision": report.training_precision,
            "scoring": report.scoring.precision,
            "tokens_per_s": nan if report.throughput.train_tokens_per_s is None else report.throughput.train_tokens_per_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the earlier checkout's root")
    parser.add_argument("--dataset", default="bbc-news")
    parser.add_argument("--epochs", type=float, default=None, help="default: the run's own default")
    parser.add_argument("--seeds", default="42")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more flags for both")
    args = parser.parse_args()
    import torch

    from lft_core.hardware import describe_machine

    before = Path(args.before).resolve()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=before, capture_output=True, text=True).stdout
    here = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
    print(f"# bench_before_after  {time.strftime('%Y-%m-%d %H:%M')}  torch {torch.__version__}")
    print(f"# machine: {describe_machine()}")
    print(f"# before: {before} ({commit.strip()}); after: {REPO} ({here.strip()} + working tree); "
          f"dataset {args.dataset}, epochs {args.epochs or 'default'}, extra {args.extra}")
    results = {"before": [], "after": []}
    for i, seed in enumerate(int(s) for s in args.seeds.split(",")):
        for who in (["before", "after"] if i % 2 == 0 else ["after", "before"]):
            row = run(before if who == "before" else REPO, args, seed)
            results[who].append(row)
            print(f"seed {seed:<3d} {who:6s} wall {row['wall_s']:7.1f} s  train {row['train_s']:7.1f} s  eval "
                  f"{row['eval_s']:6.1f} s  {row['tokens_per_s']:6.0f} tok/s  accuracy {row['accuracy']:.4f} "
                  f"(TF-IDF {row['tfidf']:.4f})  peak RSS {row['peak_rss_mb']:.0f} MB  train {row['precision']}, "
                  f"scored {row['scoring']}", flush=True)
    print(f"\n{'mean':18s}{'before':>10s}{'after':>10s}{'after/before':>14s}")
    for key in ("wall_s", "train_s", "eval_s", "tokens_per_s", "accuracy", "peak_rss_mb"):
        b, a = (float(np.mean([r[key] for r in results[w]])) for w in ("before", "after"))
        print(f"{key:18s}{b:10.3f}{a:10.3f}{a / b if b else float('nan'):14.2f}")


if __name__ == "__main__":
    main()
