"""Where a MiniLM LoRA training call's time goes, at the project's two shapes, and what each speed candidate buys.

    .venv/bin/python benchmarks/profile_step.py | tee benchmarks/results/profile_step-$(date +%F).txt
    .venv/bin/python benchmarks/profile_step.py --compile     # adds torch.compile(dynamic=True), slow to compile

Shapes: `long` is 8 x 256 (bbc-news cut at 256 tokens); `short` is a sequence of airline-tweet calls of 16 rows at
their real padded lengths, as training draws them (lft_core.train.call_shapes), so that a new padded length's cost
(oneDNN creating kernels for it) is inside the figure. Each variant: a fresh model, 3 warm-up calls, then the
median of 3 rounds over the same calls. Minor page faults per call (allocator churn) come from getrusage.

Variants, each against the default that lft_core picks on this machine:
- precision: bf16 autocast against fp32 (bf16 only where the CPU has it natively);
- attention: eager against SDPA;
- padding each call to a multiple of 16 or 64 (fewer distinct shapes, more pad tokens);
- frozen linear weights stored in bf16, so autocast does not cast them on every call;
- Python and dispatch overhead: a 1 x 8 call, where the arithmetic is negligible;
- torch.compile(dynamic=True) with --compile.
Then torch.profiler's top operators for the default at each shape. Threads: as the governor would pick idle (all
cores) unless --threads is given; the machine's ISA is printed first.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def make_model(attention: str):
    """bench_step's model (MiniLM, lft_core's default LoRA, base dropout off), with LoRA dropout 0 as lft_core trains."""
    from transformers.utils import logging

    from bench_step import make_model as bench_step_model

    logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    return bench_step_model(attention, lora_dropout=0.0)


def frozen_linears_to_bf16(model) -> None:
    """Store the weights of frozen nn.Linear layers in bf16 (LoRA's own and the head stay fp32)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and not module.weight.requires_grad:
            module.weight.data = module.weight.data.to(torch.bfloat16)
            if module.bias is not None:
                module.bias.data = module.bias.data.to(torch.bfloat16)


def calls_for(shape: str, multiple: int) -> list[tuple[int, int]]:
    """(rows, padded length) of each call."""
    from bench_threads import shapes

    if shape == "long":
        return [(8, 256)] * 4
    found = []
    for rows, padded in shapes("short")[:24]:
        if multiple > 1:
            padded = min(256, -(-padded // multiple) * multiple)
        found.append((len(rows), padded))
    return found


def timed_calls(model, calls, precision: str, optimizer) -> tuple[float, float]:
    """(seconds for all calls, minor page faults per call)."""
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if precision == "bf16" else contextlib.nullcontext
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    for rows, length in calls:
        ids = torch.randint(1000, 20000, (rows, length))
        with autocast():
            loss = model(input_ids=ids, attention_mask=torch.ones_like(ids),
                         labels=torch.zeros(rows, dtype=torch.long)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - start
    return seconds, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / len(calls)


def variant(shape: str, precision="bf16", attention="eager", multiple=1, bf16_weights=False, compile_model=False,
            calls=None) -> dict:
    model = make_model(attention)
    if bf16_weights:
        frozen_linears_to_bf16(model)
    forward = torch.compile(model, dynamic=True) if compile_model else model
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    calls = calls or calls_for(shape, multiple)
    first = time.perf_counter()
    timed_calls(forward, calls[:3], precision, optimizer)
    warm_s = time.perf_counter() - first
    rounds = [timed_calls(forward, calls, precision, optimizer) for _ in range(3)]
    seconds = statistics.median(r[0] for r in rounds)
    tokens = sum(r * n for r, n in calls)
    return {"ms_per_call": 1000 * seconds / len(calls), "padded_tokens_per_s": tokens / seconds,
            "faults_per_call": statistics.median(r[1] for r in rounds), "warm_s": warm_s}


def profile(shape: str, precision: str, attention: str, top: int) -> str:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    model = make_model(attention)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    calls = calls_for(shape, 1)
    timed_calls(model, calls[:3], precision, optimizer)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        timed_calls(model, calls, precision, optimizer)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--top", type=int, default=14)
    args = parser.parse_args()
    from lft_core.hardware import choose_compute, cores, describe_machine

    threads = args.threads or cores()
    torch.set_num_threads(threads)
    compute = choose_compute("auto")
    print(f"# profile_step  {time.strftime('%Y-%m-%d %H:%M')}  torch {torch.__version__}  {threads} threads")
    print(f"# machine: {describe_machine()}")
    print(f"# lft_core's precision here: {compute.describe()} ({compute.why})")
    default = compute.precision
    variants = [("default: " + default + ", eager", {"precision": default, "attention": "eager"}),
                (default + ", SDPA", {"precision": default, "attention": "sdpa"})]
    if default == "bf16":
        variants += [("fp32, eager", {"precision": "fp32", "attention": "eager"}),
                     ("fp32, SDPA", {"precision": "fp32", "attention": "sdpa"}),
                     ("bf16, eager, frozen linears stored bf16", {"attention": "eager", "bf16_weights": True})]
    variants += [(default + ", eager, pad to x16", {"precision": default, "multiple": 16}),
                 (default + ", eager, pad to x64", {"precision": default, "multiple": 64})]
    if args.compile:
        variants.append((default + ", eager, torch.compile(dynamic)", {"precision": default, "compile_model": True}))
    print(f"\n{'variant':44s} {'shape':6s} {'ms/call':>9s} {'padded tok/s':>13s} {'faults/call':>12s} "
          f"{'vs default':>11s} {'first 3 calls s':>16s}")
    for shape in ("long", "short"):
        base = None
        for name, options in variants:
            if shape == "long" and "multiple" in options:
                continue  # 256 is already a multiple of both
            row = variant(shape, **options)
            base = base or row
            print(f"{name:44s} {shape:6s} {row['ms_per_call']:9.1f} {row['padded_tokens_per_s']:13.0f} "
                  f"{row['faults_per_call']:12.0f} {base['ms_per_call'] / row['ms_per_call']:10.2f}x "
                  f"{row['warm_s']:16.2f}", flush=True)
    overhead = variant("long", precision=default, calls=[(1, 8)] * 20)
    print(f"\nPython and dispatch overhead: a 1 x 8 training call takes {overhead['ms_per_call']:.1f} ms")
    for shape in ("long", "short"):
        print(f"\n## torch.profiler, {default} eager, {shape} (self CPU time)\n")
        print(profile(shape, default, "eager", args.top))


if __name__ == "__main__":
    main()
