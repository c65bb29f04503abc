"""Time to a result: lft_core at its defaults against the straightforward recipe and TF-IDF + logistic regression,
side by side in one invocation.

    .venv/bin/python benchmarks/bench_train.py --datasets airline-tweets --epochs 1 --seeds 42,7,1
    .venv/bin/python benchmarks/bench_train.py --datasets bbc-news --epochs 2 --seeds 42,7,1

For each dataset and seed it runs, in alternating order and each in its own process, (ref)
benchmarks/ref_recipe.py, the recipe courses teach (padding="max_length" to 128 tokens, default TrainingArguments:
fp32 on a CPU, batch 8, learning rate 1e-3, peft LoRA r 8 on query/value), and (ours) `python -m lft_core run` with
lft_core's own defaults (max length 256, batches of about 1,280 tokens, LoRA's learning rate scaled to the
batch, bf16 where native), the same epochs and seed, in a fresh runs folder so its base evaluation is not cached.
TF-IDF + logistic regression is the row ours computes on the same split (its time is part of ours' end to end).
Printed per contestant: end-to-end, train and evaluation wall time, real (non-pad) tokens/s, achieved GFLOP/s and
its share of the matmul peak of the precision it trains in (MFU), peak RSS and test accuracy; means over the
seeds, then each seed.

FLOPs are counted, not estimated: torch's FlopCounterMode records one forward+backward of the LoRA model on a batch
at the contestant's mean length; multiplied by the real tokens trained, that is the useful work, so the padding
the reference computes on does not count as work done."""

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
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
REF_MAX_LENGTH = 128


def matmul_peak_gflops(n: int = 1024, repeats: int = 20, dtype: torch.dtype = torch.float32) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = max(best, 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9)
    return best


def data_facts(dataset: str, max_length: int, seed: int, max_train: int | None) -> dict:
    from lft_core import RunConfig, load_data
    from lft_core.evaluate import encode
    from lft_core.models import load_tokenizer, resolve_model

    data = load_data(RunConfig(dataset=dataset, seed=seed, max_train_samples=max_train))
    tokenizer = load_tokenizer(resolve_model("minilm"))
    train, _ = encode(tokenizer, list(data["train"]["text"]), max_length)
    test, _ = encode(tokenizer, list(data["test"]["text"]), max_length)
    return {"train_tokens": sum(map(len, train)), "test_tokens": sum(map(len, test)),
            "mean_len": float(np.mean([len(t) for t in train])), "train_rows": len(train), "test_rows": len(test)}


def training_flops_per_token(mean_len: float, batch: int = 16) -> float:
    """Counted FLOPs of one LoRA training step (forward + backward), per token, at this length."""
    from torch.utils.flop_counter import FlopCounterMode

    from bench_step import make_model

    model = make_model()
    ids = torch.randint(1000, 20000, (batch, max(int(mean_len), 2)))
    counter = FlopCounterMode(display=False)
    with counter:
        model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.zeros(batch, dtype=torch.long)).loss.backward()
    return counter.get_total_flops() / ids.numel()


def run_ours(dataset: str, args) -> dict:
    with tempfile.TemporaryDirectory() as out:
        cmd = [PY, "-m", "lft_core", "run", "--dataset", dataset, "--epochs", str(args.epochs), "--seed",
               str(args.seed), "--output", f"{out}/run", *args.ours_args]
        if args.max_train_samples:
            cmd += ["--max-train-samples", str(args.max_train_samples)]
        env = {**os.environ, "LFT_ADAPTERS_DIR": f"{out}/runs"}  # no cached base evaluation
        start = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        wall = time.perf_counter() - start
        from lft_core.report import RunReport

        report = RunReport.from_dict(json.loads(Path(f"{out}/run/report.json").read_text()))
    tfidf = report.references.get("tfidf")
    return {"train_s": report.timing.train_s,
            "eval_s": report.timing.base_eval_s + report.timing.finetuned_eval_s,
            "wall_s": wall, "test_accuracy": report.finetuned.scores["accuracy"],
            "peak_rss_mb": report.peak_memory_mb, "precision": report.training_precision,
            "scoring": report.scoring.precision,
            "max_length": report.config["max_length"], "batch_size": report.config["batch_size"],
            "tfidf_accuracy": tfidf.scores.get("accuracy", float("nan")) if tfidf else float("nan"),
            "tfidf_s": tfidf.seconds if tfidf else float("nan")}


def run_ref(dataset: str, args) -> dict:
    cmd = [PY, str(REPO / "benchmarks" / "ref_recipe.py"), "--dataset", dataset, "--epochs", str(args.epochs),
           "--max-length", str(REF_MAX_LENGTH), "--seed", str(args.seed), "--learning-rate", "1e-3", "--batch-size", "8"]
    if args.max_train_samples:
        cmd += ["--max-train-samples", str(args.max_train_samples)]
    start = time.perf_counter()
    out = subprocess.run(cmd, check=True, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return {**{k: result[k] for k in ("train_s", "eval_s", "test_accuracy", "peak_rss_mb")}, "wall_s": wall,
            "precision": "fp32", "max_length": REF_MAX_LENGTH, "batch_size": 8}


PY = sys.executable


def mean_result(runs: list[dict]) -> dict:
    return {k: (float(np.mean([r[k] for r in runs])) if isinstance(runs[0][k], (int, float)) else runs[0][k])
            for k in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="airline-tweets,bbc-news")
    parser.add_argument("--epochs", type=float, default=1, help="for both contestants")
    parser.add_argument("--seeds", default="42", help="comma-separated; one ref/ours pair per seed, figures are means")
    parser.add_argument("--max-train-samples", type=int, help="smaller runs for a quick look")
    parser.add_argument("--ours-args", default="", help="extra flags for ours, e.g. '--max-length 128'")
    args = parser.parse_args()
    args.ours_args = args.ours_args.split()
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"# bench_train  {time.strftime('%Y-%m-%d %H:%M')}  torch {torch.__version__}  threads "
          f"{torch.get_num_threads()}  cpus {os.cpu_count()}")
    print(f"# args {vars(args)}")
    peaks = {"fp32": matmul_peak_gflops(), "bf16": matmul_peak_gflops(dtype=torch.bfloat16)}
    print(f"matmul peak (1024^3, best of 5): fp32 {peaks['fp32']:.1f} GFLOP/s, bf16 {peaks['bf16']:.1f} GFLOP/s\n")
    pair = 0
    for dataset in args.datasets.split(","):
        runs, orders = {"ref": [], "ours": []}, []
        for seed in seeds:
            order = ["ref", "ours"] if pair % 2 == 0 else ["ours", "ref"]
            pair += 1
            orders.append(" then ".join(order))
            for who in order:
                result = (run_ref if who == "ref" else run_ours)(dataset, argparse.Namespace(**{**vars(args), "seed": seed}))
                facts = data_facts(dataset, result["max_length"], seed, args.max_train_samples)
                runs[who].append({**result, "trained_tokens": facts["train_tokens"] * args.epochs,
                                  "test_tokens": facts["test_tokens"], "mean_len": facts["mean_len"]})
        results = {who: mean_result(r) for who, r in runs.items()}
        flops = {who: training_flops_per_token(results[who]["mean_len"]) for who in results}
        print(f"## {dataset}, {args.epochs:g} epoch(s), seeds {seeds}, order per seed: {'; '.join(orders)}")
        print(f"ref: max length {REF_MAX_LENGTH} (padded), batch 8, lr 1e-3, fp32 training; ours: max length "
              f"{results['ours']['max_length']:.0f}, batch {results['ours']['batch_size']:.0f}, "
              f"{results['ours']['precision']} training; evaluation: ref fp32, ours "
              f"{runs['ours'][0].get('scoring', '?')} (the report's scoring); counted MFLOP per trained token: "
              f"ref {flops['ref'] / 1e6:.1f}, ours {flops['ours'] / 1e6:.1f}")
        print(f"{'':30s}{'ref':>11s}{'ours':>11s}{'TF-IDF':>9s}{'ref/ours':>10s}")
        rows = [
            ("end-to-end wall s", lambda r: r["wall_s"]),
            ("train wall s", lambda r: r["train_s"]),
            ("eval wall s (2 test evals)", lambda r: r["eval_s"]),
            ("train real tokens/s", lambda r: r["trained_tokens"] / r["train_s"]),
            ("eval real tokens/s", lambda r: 2 * r["test_tokens"] / r["eval_s"]),
            ("train MFU vs own precision", lambda r, w=None: None),
            ("peak RSS MB", lambda r: r["peak_rss_mb"]),
            ("test accuracy", lambda r: r["test_accuracy"]),
        ]
        for label, value in rows:
            if label.startswith("train MFU"):
                ref_v, ours_v = (results[w]["trained_tokens"] * flops[w] / results[w]["train_s"] / 1e9 /
                                 peaks[results[w]["precision"]] for w in ("ref", "ours"))
            else:
                ref_v, ours_v = value(results["ref"]), value(results["ours"])
            tfidf = {"test accuracy": f"{results['ours']['tfidf_accuracy']:9.4f}",
                     "end-to-end wall s": f"{results['ours']['tfidf_s']:9.1f}"}.get(label, " " * 9)
            print(f"{label:30s}{ref_v:11.3f}{ours_v:11.3f}{tfidf}{ref_v / ours_v if ours_v else float('nan'):10.2f}")
        for i, seed in enumerate(seeds):
            ref, ours = runs["ref"][i], runs["ours"][i]
            print(f"seed {seed:<4d} end-to-end s ref {ref['wall_s']:6.1f} ours {ours['wall_s']:6.1f} ratio "
                  f"{ref['wall_s'] / ours['wall_s']:4.2f}; test accuracy ref {ref['test_accuracy']:.4f} ours "
                  f"{ours['test_accuracy']:.4f} TF-IDF {ours['tfidf_accuracy']:.4f}")
        gap_ref = [100 * (o["test_accuracy"] - r["test_accuracy"]) for r, o in zip(runs["ref"], runs["ours"])]
        gap_tfidf = [100 * (o["test_accuracy"] - o["tfidf_accuracy"]) for o in runs["ours"]]
        print(f"accuracy ours - ref, points: {[round(g, 2) for g in gap_ref]}, mean {np.mean(gap_ref):+.2f}; "
              f"ours - TF-IDF: {[round(g, 2) for g in gap_tfidf]}, mean {np.mean(gap_tfidf):+.2f}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
