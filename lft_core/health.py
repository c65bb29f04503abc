"""Dataset health check, before any training: split sizes, class balance (and what to do about imbalance),
samples, token lengths against max_length, duplicates within and across splits, classes missing from a split,
empty texts. Problems become warnings that name the rows and classes; a problem that stops training is reported
as the error load_data raises."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lft_core.config import DEFAULT_MAX_LENGTH, default_max_length
from lft_core.data import detect_columns, load_data, read_source
from lft_core.errors import LftError

IMBALANCE_RATIO = 3.0
"""Largest over smallest class in train at which a warning says how to train and judge such data."""


@dataclass
class Health:
    splits: dict[str, int] = field(default_factory=dict)
    balance: pd.DataFrame | None = None
    """rows: class; columns: split counts"""
    samples: pd.DataFrame | None = None
    lengths: list[int] = field(default_factory=list)
    """token counts of the train texts, untruncated"""
    max_length: int = 0
    """the length the truncation figures refer to: the recommended one where there is one (the app pre-fills it)"""
    truncated_share: float = 0.0
    warnings: list[str] = field(default_factory=list)
    imbalanced: bool = False
    """the largest class outnumbers the smallest IMBALANCE_RATIO to 1 or more: class weights are suggested"""
    recommended: dict = field(default_factory=dict)
    """max_length and truncation to train with, and why (from the token lengths)"""
    error: str | None = None


def _rows(index, limit: int = 5) -> str:
    shown = ", ".join(str(i) for i in list(index)[:limit])
    return shown + (f" and {len(index) - limit} more" if len(index) > limit else "")


def _raw_warnings(cfg) -> list[str]:
    """Row-level problems in the source as given, named by split and row number."""
    frames, _ = read_source(cfg)
    text, label = detect_columns(next(iter(frames.values())), cfg.text_column, cfg.label_column)
    found = []
    for split, frame in frames.items():
        where = "the file" if split == "all" else f"{split}"
        empty = frame.index[frame[text].fillna("").astype(str).str.strip() == ""]
        if len(empty):
            found.append(f"{where}: {len(empty)} empty texts (rows {_rows(empty)}) will be dropped")
        duplicated = frame.index[frame[text].astype(str).str.lower().str.strip().duplicated(keep="first")]
        if len(duplicated):
            found.append(f"{where}: {len(duplicated)} duplicate texts (rows {_rows(duplicated)})")
    return found


class _Collect(logging.Handler):
    """The warnings load_data logs (merged label spellings, classes too small to split) belong in the report."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        if "empty texts" not in record.getMessage():  # already named row by row
            self.messages.append(record.getMessage())


def imbalance_warning(balance: pd.DataFrame) -> str | None:
    counts = balance.set_index("class")["train"]
    counts = counts[counts > 0]
    if len(counts) < 2 or counts.max() < IMBALANCE_RATIO * counts.min():
        return None
    top, low = counts.idxmax(), counts.idxmin()
    share = counts / counts.sum()
    return (f"train is imbalanced: '{top}' has {share[top]:.0%} of the texts, '{low}' {share[low]:.0%} "
            f"({counts.max() / counts.min():.1f} to 1). Always answering '{top}' already scores {share[top]:.2f} "
            f"accuracy, so judge the run by macro-F1; class weights (pre-set in Fine-tune) and more epochs help the "
            f"rare classes")


def check_dataset(cfg, tokenizer=None) -> Health:
    """Inspect cfg.dataset as training would see it. Never raises LftError: it is reported in Health.error."""
    health, collect = Health(max_length=cfg.max_length or default_max_length()), _Collect()
    logger = logging.getLogger("lft_core")
    logger.addHandler(collect)
    try:
        health.warnings += _raw_warnings(cfg)
        data = load_data(cfg)
    except LftError as exc:
        health.error = str(exc)
        return health
    finally:
        logger.removeHandler(collect)
    health.warnings += collect.messages
    names = data["train"].features["label"].names
    health.splits = {split: len(data[split]) for split in data}
    health.balance = pd.DataFrame({split: np.bincount(data[split]["label"], minlength=len(names)) for split in data},
                                  index=names).rename_axis("class").reset_index()
    warning = imbalance_warning(health.balance)
    if warning:
        health.imbalanced = True
        health.warnings.append(warning)
    train = data["train"].to_pandas()
    train["label"] = [names[i] for i in train["label"]]
    samples = train.groupby("label", sort=True).head(2).reset_index(drop=True)
    health.samples = samples.assign(text=samples["text"].str.slice(0, 160))[["label", "text"]]
    health.warnings += _overlap_warnings(data)
    small = health.balance[(health.balance["train"] < 5) & (health.balance["train"] > 0)]["class"].tolist()
    if small:
        from lft_core.data import name_some

        health.warnings.append(f"train: {len(small)} classes have fewer than 5 examples: {name_some(small)}")
    if tokenizer is not None:
        from lft_core.evaluate import encode

        from lft_core.models import unknown_token_warning

        texts = list(data["train"]["text"])
        ids, health.lengths = encode(tokenizer, texts, health.max_length)
        unknown = unknown_token_warning(tokenizer, ids, "train", texts)
        if unknown:
            health.warnings.append(unknown)
        health.recommended = recommend_length(health.lengths, cfg)
        health.max_length = health.recommended.get("max_length", health.max_length)
        health.truncated_share = truncated_share(health.lengths, health.max_length)
        # the recommended length's truncation is a choice its reason explains, not a problem to warn about
        if health.truncated_share > 0.5 and not health.recommended:
            health.warnings.append(f"{health.truncated_share:.0%} of train texts exceed max_length={health.max_length} "
                                   f"tokens and will be truncated")
    return health


def truncated_share(lengths: list[int], max_length: int) -> float:
    return float(np.mean([n > max_length for n in lengths])) if lengths else 0.0


LONG_TEXT_LENGTH = DEFAULT_MAX_LENGTH
"""Where most texts are longer than this, train on this many tokens: the default length, for the same reason
(config.DEFAULT_MAX_LENGTH; the runs behind it, head+tail truncation included, are in benchmarks/results/defaults.md)."""


def recommend_length(lengths: list[int], cfg) -> dict:
    """The max length to train with, which tokens to keep, and the batch size training would take at that length.
    (How long a run takes is measured, not computed here: lft_core.estimate_run_time.)"""
    if not lengths:
        return {}
    p95 = float(np.percentile(lengths, 95))
    if p95 <= LONG_TEXT_LENGTH:
        length = int(min(512, max(32, 16 * np.ceil(p95 / 16))))
        why = f"95% of the train texts have at most {p95:.0f} tokens, so {length} keeps them whole"
    else:
        length = LONG_TEXT_LENGTH
        why = (f"95% of the train texts have up to {p95:.0f} tokens; {length} tokens scored best per minute of "
               f"training on long news articles (bbc-news), so the {truncated_share(lengths, length):.0%} of texts "
               f"that are longer keep their first {length} tokens")
    from lft_core.batching import auto_batch_size

    kept = [min(n, length) for n in lengths]
    batch = cfg.batch_size or auto_batch_size(kept, length)
    return {"max_length": length, "truncation": "head", "why": why, "tokens_per_epoch": int(sum(kept)),
            "batch_size": batch}


def _overlap_warnings(data) -> list[str]:
    keys = {split: pd.Series(list(data[split]["text"])).str.lower().str.strip() for split in data}
    found = []
    for split in ("validation", "test"):
        shared = keys[split][keys[split].isin(set(keys["train"]))]
        if len(shared):
            found.append(f"{split}: {len(shared)} texts also appear in train (rows {_rows(shared.index)}); scores on "
                         f"them overstate generalisation")
    return found
