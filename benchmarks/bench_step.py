"""One MiniLM LoRA training step, timed under each choice lft_core makes for speed, side by side.

    .venv/bin/python benchmarks/bench_step.py | tee benchmarks/results/bench_step.txt
    .venv/bin/python benchmarks/bench_step.py --compile    # adds torch.compile (slow to compile)

A step is forward + backward + AdamW on a batch of random token ids (batch 8 x 128 tokens unless told), with
dropout off in the frozen base as lft_core trains. Each variant gets its own freshly loaded model, a warm-up,
then the best of three timings of 8 steps; all variants run once, then all again, so drift shows up as a
difference between the two rounds. Variants: training precision (fp32, bf16 autocast), attention kernel (SDPA,
eager), LoRA dropout (0, 0.05) and torch threads."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_model(attention: str = "sdpa", lora_dropout: float = 0.0):
    """MiniLM with a 5-class head and lft_core's default LoRA (r, alpha from the registry), base dropout off."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging

    from lft_core.methods import METHODS
    from lft_core.models import resolve_model

    logging.set_verbosity_error()
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(resolve_model("minilm"), num_labels=5,
                                                               attn_implementation=attention)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    lora = METHODS["lora"].defaults
    config = LoraConfig(task_type="SEQ_CLS", r=lora["r"], lora_alpha=lora["lora_alpha"], lora_dropout=lora_dropout,
                        target_modules=["query", "value"])
    return get_peft_model(model, config).train()


def step_ms(precision: str, attention: str, lora_dropout: float, threads: int, batch: int, length: int,
            compile_model: bool = False) -> tuple[float, float]:
    """(best ms per step, seconds of the first step, which includes any compilation)."""
    torch.set_num_threads(threads)
    model = make_model(attention, lora_dropout)
    forward = torch.compile(model) if compile_model else model
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    ids = torch.randint(1000, 20000, (batch, length))
    labels = torch.randint(0, 5, (batch,))

    def step():
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
        with autocast:
            loss = forward(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    for _ in range(3):
        step()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(8):
            step()
        best = min(best, (time.perf_counter() - start) / 8 * 1000)
    return best, first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (bf16, eager attention)")
    args = parser.parse_args()
    cores = torch.get_num_threads()
    print(f"# bench_step  {time.strftime('%Y-%m-%d %H:%M')}  torch {torch.__version__}  default threads {cores}  "
          f"batch {args.batch} x {args.length} tokens")
    variants = [
        ("fp32", "sdpa", 0.05, cores), ("fp32", "eager", 0.0, cores), ("fp32", "sdpa", 0.0, cores),
        ("bf16", "sdpa", 0.05, cores), ("bf16", "sdpa", 0.0, cores), ("bf16", "eager", 0.05, cores),
        ("bf16", "eager", 0.0, cores),
    ]
    if cores > 1:
        variants.append(("bf16", "eager", 0.0, cores // 2))
    rounds = [[step_ms(*variant, args.batch, args.length)[0] for variant in variants] for _ in range(2)]
    print(f"{'precision':10s}{'attention':10s}{'lora dropout':>13s}{'threads':>8s}{'round 1 ms':>12s}{'round 2 ms':>12s}")
    for i, variant in enumerate(variants):
        print(f"{variant[0]:10s}{variant[1]:10s}{variant[2]:13.2f}{variant[3]:8d}{rounds[0][i]:12.1f}{rounds[1][i]:12.1f}")
    if args.compile:
        for compiled in (False, True):
            best, first = step_ms("bf16", "eager", 0.0, cores, args.batch, args.length, compile_model=compiled)
            print(f"torch.compile={compiled}: first step {first:.1f} s, then {best:.1f} ms per step", flush=True)
    torch.set_num_threads(cores)


if __name__ == "__main__":
    main()
