"""Training throughput idle and beside one and two CPU-bound processes, under each thread policy, side by side.

    .venv/bin/python benchmarks/bench_threads.py | tee benchmarks/results/bench_threads-$(date +%F).txt
    .venv/bin/python benchmarks/bench_threads.py --seconds 10 --loads 0 1    # shorter

The benchmark starts the busy processes itself (`python -c "while True: pass"`, one per load level), so idle and
busy are measured in one invocation on the same machine. For each load level and policy, a fresh worker process
loads MiniLM with lft_core's default LoRA, in the precision and attention kernel lft_core would choose here, and
runs real training calls (forward, backward, AdamW step) for `--seconds` at each of the project's two shapes:

- long: bbc-news articles cut at 256 tokens, batches of 8 (the default batch for such texts);
- short: airline tweets at their real token lengths, batches of 32 drawn as training draws them, each run as two
  length-sorted calls of 16 (lft_core.train.call_shapes).

Throughput counts real tokens (pads excluded) per second of wall time, warm-up excluded. Policies:
- `fixed 2 (before)`: torch's default, one thread per core, and glibc's default allocator (what lft_core did
  before);
- `governor`: lft_core.hardware.THREADS timing every call, as training does, after the run's calibration-like
  start (a few calls at each count, outside the timed window, as calibration is outside the training phase); its
  re-checks are inside the window; freed memory kept for reuse (its own A/B trials included in the
  timed window, as in a real run);
- `fixed 2, OMP_WAIT_POLICY=PASSIVE`: threads that sleep instead of spinning while they wait (freed memory kept).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

POLICIES = {
    "fixed 2 (before)": {"LFT_THREADS": "2", "LFT_MALLOC": "0"},
    "governor": {},
    "fixed 2, OMP_WAIT_POLICY=PASSIVE": {"LFT_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"},
}
EXTRA_POLICIES = {
    # libgomp spins this many times before a waiting thread sleeps (its default is 300,000; PASSIVE is 0)
    "governor, GOMP_SPINCOUNT=10000": {"GOMP_SPINCOUNT": "10000"},
    "governor, GOMP_SPINCOUNT=1000": {"GOMP_SPINCOUNT": "1000"},
    "fixed 2, GOMP_SPINCOUNT=10000": {"LFT_THREADS": "2", "GOMP_SPINCOUNT": "10000"},
}


def shapes(kind: str) -> list[tuple[list[int], int]]:
    """Calls of the kind's shape: (real length of each row, padded length)."""
    import numpy as np

    from lft_core import RunConfig, load_data, tokenizer_for
    from lft_core.evaluate import encode
    from lft_core.train import call_shapes

    tokenizer = tokenizer_for("minilm")
    dataset, max_length, batch = ("bbc-news", 256, 8) if kind == "long" else ("airline-tweets", 256, 32)
    texts = list(load_data(RunConfig(dataset=dataset))["train"]["text"])[:2000]
    _, lengths = encode(tokenizer, texts, max_length)
    lengths = [min(n, max_length) for n in lengths]
    rng = np.random.default_rng(0)
    calls = []
    for texts_in_call, padded in call_shapes(lengths, batch, seed=0):
        # rows of this call: real lengths up to the padded one (the longest row sets the padding)
        fitting = [n for n in lengths if n <= padded] or [padded]
        rows = [padded] + list(rng.choice(fitting, size=texts_in_call - 1))
        calls.append(([int(n) for n in rows], int(padded)))
    return calls


def worker(seconds: float) -> None:
    """In a fresh process: time real training calls at both shapes; print one JSON line per shape."""
    import torch
    from transformers.utils import logging

    from bench_step import make_model
    from lft_core.estimate import attention_choice
    from lft_core.hardware import THREADS, call_work, choose_compute, keep_freed_memory
    from lft_core.train import attention_implementation

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    keep_freed_memory()  # as lft_core.run does (LFT_MALLOC=0 for the "before" policy)
    compute = choose_compute("auto")
    model = make_model()  # as a run trains it: lft_core's default LoRA, the frozen base's dropout off
    attention = attention_choice(model, compute)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def call(rows: list[int], padded: int, governed: bool = True) -> None:
        ids = torch.randint(1000, 20000, (len(rows), padded))
        mask = (torch.arange(padded)[None, :] < torch.tensor(rows)[:, None]).long()
        labels = torch.randint(0, 5, (len(rows),))
        timing = THREADS.timed("train", call_work(ids.shape)) if governed else contextlib.nullcontext()
        with timing, attention_implementation(model, attention):
            with compute.autocast():
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for kind in ("long", "short"):
        calls = shapes(kind)
        for rows, padded in calls[:3]:  # warm-up: kernel selection, first allocations
            call(rows, padded, governed=False)
        if THREADS.adaptive:
            # as a run's calibration does before training (lft_core.estimate.calibrate): a few calls at each
            # candidate count, interleaved, and the governor starts from the faster; outside the timed window,
            # as calibration is outside the training phase
            trial = {n: 0.0 for n in THREADS.candidates_now()}
            for rows, padded in calls[3:5]:
                for n in trial:
                    torch.set_num_threads(n)
                    start = time.perf_counter()
                    call(rows, padded, governed=False)
                    trial[n] += time.perf_counter() - start
            best = min(trial, key=trial.get)
            THREADS.prime("train", best, {n: trial[n] / trial[best] for n in trial})
            torch.set_num_threads(best)
        tokens, done, start = 0, 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            rows, padded = calls[(done + 3) % len(calls)]
            call(rows, padded)
            tokens += sum(rows)
            done += 1
        wall = time.perf_counter() - start
        print(json.dumps({"shape": kind, "tokens_per_s": tokens / wall, "calls": done, "wall_s": wall,
                          "threads_at_end": torch.get_num_threads(), "precision": compute.precision,
                          "attention": attention}), flush=True)


def busy_loops(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def measure(policy: str, seconds: float) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("LFT_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update({**POLICIES, **EXTRA_POLICIES}[policy], HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    out = subprocess.run([sys.executable, __file__, "--worker", "--seconds", str(seconds)], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=600 + 10 * seconds)
    if out.returncode:
        raise SystemExit(f"worker failed ({policy}): {out.stderr.strip().splitlines()[-1:]}")
    return {line["shape"]: line for line in map(json.loads, filter(str.strip, out.stdout.splitlines()))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="timed seconds per shape and policy")
    parser.add_argument("--loads", type=int, nargs="+", default=[0, 1, 2], help="busy processes beside the run")
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=[*POLICIES, *EXTRA_POLICIES],
                        metavar="POLICY", help=f"policies to compare (default: {', '.join(POLICIES)}; also: "
                                               f"{', '.join(EXTRA_POLICIES)})")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.seconds)
        return
    import torch

    from lft_core.hardware import describe_machine

    print(f"# bench_threads  {time.strftime('%Y-%m-%d %H:%M')}  torch {torch.__version__}")
    print(f"# machine: {describe_machine()}")
    print(f"# {args.seconds:g} s timed per shape; real tokens per second (pads excluded); loads started here")
    results: dict[tuple[int, str], dict] = {}
    for load in args.loads:
        loops = busy_loops(load)
        try:
            time.sleep(1.0)  # let the busy processes reach the scheduler's steady state
            for policy in args.policies:
                results[(load, policy)] = measure(policy, args.seconds)
                for kind, row in results[(load, policy)].items():
                    print(f"  load {load}  {policy:34s} {kind:5s} {row['tokens_per_s']:8.0f} tok/s "
                          f"({row['calls']} calls, {row['threads_at_end']} threads at the end, {row['precision']}, "
                          f"{row['attention']} attention)", flush=True)
        finally:
            for loop in loops:
                loop.kill()
                loop.wait()
    print()
    print(f"{'policy':34s} {'shape':6s}" + "".join(f"{'load ' + str(n):>12s}" for n in args.loads)
          + "".join(f"{'ratio ' + str(n):>10s}" for n in args.loads if n))
    for policy in args.policies:
        for kind in ("long", "short"):
            figures = [results[(n, policy)][kind]["tokens_per_s"] for n in args.loads]
            ratios = [f / figures[0] for n, f in zip(args.loads, figures) if n] if args.loads[0] == 0 else []
            print(f"{policy:34s} {kind:6s}" + "".join(f"{f:12.0f}" for f in figures)
                  + "".join(f"{r:10.2f}" for r in ratios))
    if 0 in args.loads and {"fixed 2 (before)", "governor"} <= set(args.policies):
        print("\nratio n = throughput beside n busy processes / idle throughput of the same policy")
        before = results[(0, "fixed 2 (before)")]
        after = results[(0, "governor")]
        for kind in ("long", "short"):
            print(f"idle, governor / before, {kind}: {after[kind]['tokens_per_s'] / before[kind]['tokens_per_s']:.2f}")


if __name__ == "__main__":
    main()
