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
from lft_core.errors import LftError
from lft_core.data import detect_columns, detect_pair_columns, load_data, read_source, seen_in_train

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


def _rows(index, limit: int = 5) -> str:
    shown = ", ".join(str(i) for i in list(index)[:limit])
    return shown + (f" and {len(index) - limit} more" if len(index) > limit else "")


def _raw_warnings(cfg) -> list[str]:
    """Row-level problems in the source as given, named by split and row number."""
    frames, _ = read_source(cfg)
    first = next(iter(frames.values()))
    pair = detect_pair_columns(first, cfg.text_column, getattr(cfg, "text_pair_column", None))
    text, label = detect_columns(first.drop(columns=[pair[1]]) if pair else first,
                                 pair[0] if pair else cfg.text_column, cfg.label_column)
    found = _separator_hint(first[label], getattr(cfg, "label_separator", None))
    for split, frame in frames.items():
        where = "the file" if split == "all" else f"{split}"
        empty = frame.index[frame[text].fillna("").astype(str).str.strip() == ""]
        if len(empty):
            found.append(f"{where}: " + (f"1 empty text (row {empty[0]}) will be dropped" if len(empty) == 1 else
                                         f"{len(empty)} empty texts (rows {_rows(empty)}) will be dropped"))
        duplicated = frame.index[frame[text].astype(str).str.lower().str.strip().duplicated(keep="first")]
        if len(duplicated):
            found.append(f"{where}: {len(duplicated)} duplicate texts (rows {_rows(duplicated)})")
    return found


SEPARATORS = (";", "|", ",")


def _separator_hint(labels: pd.Series, separator: str | None) -> list[str]:
    """A CSV label column that looks delimited ('sport;tech'): suggest --label-separator, once."""
    if separator or labels.map(lambda v: isinstance(v, (list, tuple, np.ndarray))).any():
        return []
    strings = labels.dropna().astype(str)
    for sep in SEPARATORS:
        joined = strings[strings.str.contains(sep, regex=False)]
        parts = {p.strip() for value in strings for p in value.split(sep)}
        if len(strings) and len(joined) >= 0.1 * len(strings) and len(parts) < strings.nunique():
            return [f"the label column looks like label sets separated by {sep!r} (e.g. {joined.iloc[0]!r}); for "
                    f"multi-label pass --label-separator '{sep}' (the app: Label separator)"]
    return []


def _label_frequencies(data, names: list[str]) -> pd.DataFrame:
    """Multi-label: texts carrying each label, per split (a text counts once for each of its labels)."""
    from lft_core.evaluate import multi_hot

    return pd.DataFrame({split: multi_hot(data[split]["label"], len(names)).sum(0).astype(int) for split in data},
                        index=names).rename_axis("class").reset_index()


def _co_occurrence(data, names: list[str], top: int = 3) -> list[str]:
    """Multi-label: how many labels a train text has, and the label pairs that occur together most."""
    from lft_core.evaluate import multi_hot

    train = multi_hot(data["train"]["label"], len(names))
    together = train.T @ train
    pairs = sorted(((int(together[i, j]), names[i], names[j]) for i in range(len(names))
                    for j in range(i + 1, len(names)) if together[i, j]), reverse=True)[:top]
    none = int((train.sum(1) == 0).sum())
    line = (f"train: {train.sum(1).mean():.2f} labels per text, {none} texts with none"
            + ("; most frequent together: " + ", ".join(f"{a} + {b} ({n})" for n, a, b in pairs) if pairs else ""))
    return [line]


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
    """Inspect cfg.dataset as training would see it. Raises LftError for data a run would refuse, as load_data
    does, with what the raw file suggests added to that one line (a label column that looks delimited is the
    likely reason its labels were refused)."""
    health, collect = Health(max_length=cfg.max_length or default_max_length()), _Collect()
    logger = logging.getLogger("lft_core")
    logger.addHandler(collect)
    try:
        health.warnings += _raw_warnings(cfg)
        data = load_data(cfg)
    except LftError as exc:
        if not health.warnings:
            raise
        raise LftError(f"{str(exc).rstrip('.')}. Also: {' '.join(health.warnings)}") from None
    finally:
        logger.removeHandler(collect)
    health.warnings += collect.messages
    from lft_core.evaluate import label_feature

    multi = not hasattr(data["train"].features["label"], "names")
    names = label_feature(data["train"]).names
    health.splits = {split: len(data[split]) for split in data}
    health.balance = _label_frequencies(data, names) if multi else pd.DataFrame(
        {split: np.bincount(data[split]["label"], minlength=len(names)) for split in data},
        index=names).rename_axis("class").reset_index()
    if multi:
        health.warnings += _co_occurrence(data, names)
    warning = None if multi else imbalance_warning(health.balance)
    if warning:
        health.imbalanced = True
        health.warnings.append(warning)
    train = data["train"].to_pandas()
    train["label"] = [";".join(names[i] for i in row) if multi else names[row] for row in train["label"]]
    samples = train.groupby("label", sort=True).head(2).reset_index(drop=True)
    shown = ["label", "text"] + (["text_pair"] if "text_pair" in samples else [])
    health.samples = samples.assign(**{c: samples[c].str.slice(0, 160) for c in shown[1:]})[shown]
    health.warnings += _overlap_warnings(data)
    small = health.balance[(health.balance["train"] < 5) & (health.balance["train"] > 0)]["class"].tolist()
    if small and not multi:  # load_data names rare multi-label labels itself
        from lft_core.data import name_some

        health.warnings.append(f"train: {len(small)} classes have fewer than 5 examples: {name_some(small)}")
    if tokenizer is not None:
        from lft_core.evaluate import encode, texts_of

        from lft_core.models import unknown_token_warning

        ids, health.lengths = encode(tokenizer, texts_of(data["train"]), health.max_length)  # a pair counts both
        unknown = unknown_token_warning(tokenizer, ids, "train", list(data["train"]["text"]))
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
    found = []
    for split in ("validation", "test"):
        seen = seen_in_train(data, split)
        if seen.any():
            found.append(f"{split}: {int(seen.sum())} texts also appear in train (rows {_rows(seen.index[seen])}); "
                         f"scores on them overstate generalisation")
    return found
