"""Batch size and learning rate: the one home of the policy that picks a run's batch, splits it into micro-batches
and scales the method's learning rate to it, and of the evaluation batch. The measurements behind each number are
in benchmarks/results/defaults.md; config.py's help and the app's hints point here instead of restating them."""

from __future__ import annotations

import math
import os

import numpy as np

LR_REFERENCE_BATCH = 16
"""The methods' default learning rates (methods.METHODS) were tuned at up to this many texts a batch;
default_learning_rate scales them up for larger ones."""

TRAIN_BATCH_TOKENS = 1280
"""Real tokens a training batch holds by default, never fewer than MIN_BATCH texts: long texts come few to a batch,
short ones (tweets) many, computed in length-sorted micro-batches (MICRO_BATCH_TEXTS) with the default learning
rate scaled up (default_learning_rate), which trained as well in less time (benchmarks/results/defaults.md)."""

MIN_BATCH, MAX_BATCH = 8, 64
"""The range auto_batch_size picks from (a multiple of 4 in it, before the step cap)."""

MIN_STEPS_PER_EPOCH = 50
"""A small dataset keeps batches small enough for this many optimizer steps an epoch (96 short texts in batches of
64 would be 2 steps, and learn nothing)."""

MICRO_BATCH_TEXTS = 16
"""A batch of at least twice this many texts is computed in length-sorted micro-batches of about this many, their
gradients summed before the step: the same batch and the same gradient, less padding. Each forward and backward
call has a fixed cost on top of its tokens, so smaller parts cost more calls than they save
(benchmarks/results/defaults.md)."""

EVAL_BATCH_TOKENS = 1024
"""Tokens an evaluation batch holds by default (texts sorted by length, so few are padding); short texts get more of
them per batch. The fastest shape measured on CPU is in benchmarks/results/defaults.md."""


def world_size() -> int:
    """Processes training together (torchrun's WORLD_SIZE; 1 without DDP)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def auto_batch_size(lengths: list[int], max_length: int) -> int:
    """Texts per batch for about TRAIN_BATCH_TOKENS tokens, from the 90th percentile of the (truncated) lengths:
    a multiple of 4 from MIN_BATCH to MAX_BATCH, then capped (to any number from MIN_BATCH) so an epoch has
    MIN_STEPS_PER_EPOCH steps."""
    typical = float(np.percentile(np.minimum(lengths, max_length), 90)) if len(lengths) else max_length
    by_tokens = int(np.clip(4 * round(TRAIN_BATCH_TOKENS / max(typical, 1) / 4), MIN_BATCH, MAX_BATCH))
    return max(MIN_BATCH, min(by_tokens, len(lengths) // MIN_STEPS_PER_EPOCH))


def micro_batches(batch_size: int) -> int:
    """The most micro-batches, up to 4, that split the batch evenly into at least MICRO_BATCH_TEXTS texts each;
    1 under DDP, whose ranks would take alternate micro-batches of one sorted batch."""
    if world_size() > 1:
        return 1
    return max(k for k in (1, 2, 3, 4) if batch_size % k == 0 and (k == 1 or batch_size // k >= MICRO_BATCH_TEXTS))


def default_learning_rate(method_rate: float, batch_size: int) -> float:
    """The method's rate, times sqrt(batch / LR_REFERENCE_BATCH) for larger batches: fewer, less noisy steps an
    epoch take larger ones (the square-root rule for Adam; Malladi et al. 2022). A rate the user sets is theirs."""
    return method_rate * math.sqrt(max(batch_size, LR_REFERENCE_BATCH) / LR_REFERENCE_BATCH)


def learning_rate_hint(method_rate: float) -> str:
    """What an empty learning rate means for a method of this default rate, in a few words (the app's placeholder)."""
    n = LR_REFERENCE_BATCH
    return f"method default: {method_rate:g}, x sqrt(batch / {n}) above {n} texts"
