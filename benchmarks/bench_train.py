"""Speed benchmark: lft_core against the straightforward recipe, side by side in one invocation.

    .venv/bin/python benchmarks/bench_train.py | tee benchmarks/results/bench_train.txt
    .venv/bin/python benchmarks/bench_train.py --datasets bbc-news --seeds 42,7,1   # mean of three pairs

For each dataset it runs, in alternating order, (ref) benchmarks/ref_recipe.py and (ours) `python -m lft_core
run`, each in its own process, with the same model, data split, max length, epochs, LoRA config, learning
rate, batch size and seed. It prints, per contestant: train, eval and end-to-end wall time, real (non-pad)
tokens/s, achieved GFLOP/s and its share of the fp32 and bf16 matmul peaks measured in this same invocation
(MFU; "own peak" is the peak of the precision that contestant trained in), peak RSS,
test accuracy, and the ref/ours ratios; with several --seeds, the means and each seed's figures.

FLOPs are counted, not estimated: torch's FlopCounterMode records one forward+backward of the LoRA model on a
batch at the dataset's mean length; multiplied by the real tokens trained, that is the useful work, so the
padding the reference computes on does not count as work done."""

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
    from lft_core.models import load_tokenizer, resolve_model

    data = load_data(RunConfig(dataset=dataset, seed=seed, max_train_samples=max_train))
    tokenizer = load_tokenizer(resolve_model("minilm"))

    def lengths(split):
        return [len(ids) for ids in tokenizer(list(data[split]["text"]), truncation=True, max_length=max_length)["input_ids"]]

    train, test = lengths("train"), lengths("test")
    return {"train_tokens": sum(train), "test_tokens": sum(test), "mean_len": float(np.mean(train)),
            "train_rows": len(train), "test_rows": len(test)}


def training_flops_per_token(mean_len: int, batch: int = 16) -> float:
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
        cmd = [sys.executable, "-m", "lft_core", "run", "--dataset", dataset, "--epochs", str(args.epochs),
               "--max-length", str(args.max_length), "--seed", str(args.seed), "--output", f"{out}/run",
               "--learning-rate", str(args.learning_rate), "--batch-size", str(args.batch_size)]
        if args.max_train_samples:
            cmd += ["--max-train-samples", str(args.max_train_samples)]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        report = json.loads(Path(f"{out}/run/report.json").read_text())
    return {"train_s": report["timing"]["train_s"],
            "eval_s": report["timing"]["base_eval_s"] + report["timing"]["finetuned_eval_s"],
            "wall_s": wall, "test_accuracy": report["finetuned_metrics"]["scores"]["accuracy"],
            "peak_rss_mb": report["peak_memory_mb"], "precision": report.get("training_precision", "fp32")}


def run_ref(dataset: str, args) -> dict:
    cmd = [sys.executable, str(REPO / "benchmarks" / "ref_recipe.py"), "--dataset", dataset, "--epochs",
           str(args.epochs), "--max-length", str(args.max_length), "--seed", str(args.seed),
           "--learning-rate", str(args.learning_rate), "--batch-size", str(args.batch_size)]
    if args.max_train_samples:
        cmd += ["--max-train-samples", str(args.max_train_samples)]
    start = time.perf_counter()
    out = subprocess.run(cmd, check=True, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # default TrainingArguments: fp32 on a CPU
    return {**{k: result[k] for k in ("train_s", "eval_s", "test_accuracy", "peak_rss_mb")}, "wall_s": wall,
            "precision": "fp32"}


def mean_result(runs: list[dict]) -> dict:
    return {k: (float(np.mean([r[k] for r in runs])) if k != "precision" else runs[0][k]) for k in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="airline-tweets,bbc-news")
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="default: lft_core's LoRA default")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seeds", default="42", help="comma-separated; one ref/ours pair per seed, figures are means")
    parser.add_argument("--max-train-samples", type=int, help="smaller runs for a quick look")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    env = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_CORETYPE")}
    print(f"# bench_train  {time.strftime('%Y-%m-%d %H:%M')}  torch {torch.__version__}  threads "
          f"{torch.get_num_threads()}  cpus {os.cpu_count()}  env {env}")
    print(f"# args {vars(args)}")
    peaks = {"fp32": matmul_peak_gflops(), "bf16": matmul_peak_gflops(dtype=torch.bfloat16)}
    print(f"matmul peak (1024^3, best of 5): fp32 {peaks['fp32']:.1f} GFLOP/s, bf16 {peaks['bf16']:.1f} GFLOP/s\n")
    pair = 0
    for dataset in args.datasets.split(","):
        # the split is drawn from the seed, so token counts are taken per seed
        facts = {seed: data_facts(dataset, args.max_length, seed, args.max_train_samples) for seed in seeds}
        per_token = training_flops_per_token(np.mean([f["mean_len"] for f in facts.values()]))
        runs = {"ref": [], "ours": []}
        orders = []
        for seed in seeds:
            order = ["ref", "ours"] if pair % 2 == 0 else ["ours", "ref"]
            pair += 1
            orders.append(" then ".join(order))
            for who in order:
                result = (run_ref if who == "ref" else run_ours)(dataset, argparse.Namespace(**{**vars(args), "seed": seed}))
                runs[who].append({**result, "trained_tokens": facts[seed]["train_tokens"] * args.epochs,
                                  "test_tokens": facts[seed]["test_tokens"]})
        results = {who: mean_result(r) for who, r in runs.items()}
        facts = mean_result(list(facts.values()))
        print(f"## {dataset}: {facts['train_rows']:.0f} train rows, {facts['test_rows']:.0f} test rows, mean "
              f"{facts['mean_len']:.0f} real tokens of {args.max_length}; counted {per_token / 1e6:.1f} MFLOP per "
              f"trained token; seeds {seeds}, order per seed: {'; '.join(orders)}")
        print(f"training precision: ref {results['ref']['precision']}, ours {results['ours']['precision']} "
              f"(\"own peak\" is the matmul peak of that precision); evaluation fp32 for both")
        if len(seeds) > 1:
            print("figures are means over the seeds; per seed below the table")
        print(f"{'':28s}{'ref':>12s}{'ours':>12s}{'ref/ours':>10s}")
        rows = [
            ("train wall s", lambda r: r["train_s"]),
            ("eval wall s (2 test evals)", lambda r: r["eval_s"]),
            ("end-to-end wall s", lambda r: r["wall_s"]),
            ("train real tokens/s", lambda r: r["trained_tokens"] / r["train_s"]),
            ("eval real tokens/s", lambda r: 2 * r["test_tokens"] / r["eval_s"]),
            ("train GFLOP/s (useful)", lambda r: r["trained_tokens"] * per_token / r["train_s"] / 1e9),
            ("train MFU vs fp32 peak", lambda r: r["trained_tokens"] * per_token / r["train_s"] / 1e9 / peaks["fp32"]),
            ("train MFU vs own peak",
             lambda r: r["trained_tokens"] * per_token / r["train_s"] / 1e9 / peaks[r["precision"]]),
            ("peak RSS MB", lambda r: r["peak_rss_mb"]),
            ("test accuracy", lambda r: r["test_accuracy"]),
        ]
        for label, value in rows:
            ref, ours = value(results["ref"]), value(results["ours"])
            print(f"{label:28s}{ref:12.3f}{ours:12.3f}{ref / ours if ours else float('nan'):10.2f}")
        if len(seeds) > 1:
            for i, seed in enumerate(seeds):
                ref, ours = runs["ref"][i], runs["ours"][i]
                print(f"seed {seed:<5d} end-to-end s ref {ref['wall_s']:6.1f} ours {ours['wall_s']:6.1f} "
                      f"ratio {ref['wall_s'] / ours['wall_s']:4.2f}; test accuracy ref {ref['test_accuracy']:.4f} "
                      f"ours {ours['test_accuracy']:.4f}")
            gap = [100 * (o["test_accuracy"] - r["test_accuracy"]) for r, o in zip(runs["ref"], runs["ours"])]
            print(f"accuracy ours - ref, points: per seed {[round(g, 2) for g in gap]}, mean {np.mean(gap):+.2f}, "
                  f"std {np.std(gap, ddof=1):.2f}")
        print()
        sys.stdout.flush()


if __name__ == "__main__":
    main()
