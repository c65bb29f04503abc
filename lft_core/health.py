"""Dataset health check, before any training: split sizes, class balance, samples, token lengths against
max_length, duplicates within and across splits, labels missing from train, empty texts. Problems become
warnings that name the rows; a problem that stops training is reported as the error load_data raises."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lft_core.data import detect_columns, load_data, read_source
from lft_core.errors import LftError


@dataclass
class Health:
    splits: dict[str, int] = field(default_factory=dict)
    balance: pd.DataFrame | None = None
    """rows: class; columns: split counts"""
    samples: pd.DataFrame | None = None
    lengths: list[int] = field(default_factory=list)
    """token counts of the train texts, untruncated"""
    max_length: int = 0
    truncated_share: float = 0.0
    warnings: list[str] = field(default_factory=list)
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
        missing = frame.index[frame[label].isna()]
        if len(missing):
            found.append(f"{where}: {len(missing)} rows without a label (rows {_rows(missing)})")
        duplicated = frame.index[frame[text].astype(str).str.lower().str.strip().duplicated(keep="first")]
        if len(duplicated):
            found.append(f"{where}: {len(duplicated)} duplicate texts (rows {_rows(duplicated)})")
    return found


def check_dataset(cfg, tokenizer=None) -> Health:
    """Inspect cfg.dataset as training would see it. Never raises LftError: it is reported in Health.error."""
    health = Health(max_length=cfg.max_length)
    try:
        health.warnings += _raw_warnings(cfg)
        data = load_data(cfg)
    except LftError as exc:
        health.error = str(exc)
        return health
    names = data["train"].features["label"].names
    health.splits = {split: len(data[split]) for split in data}
    health.balance = pd.DataFrame({split: pd.Series(list(data[split]["label"])).value_counts().reindex(range(len(names)),
                                                                                               fill_value=0).values
                                   for split in data}, index=names).rename_axis("class").reset_index()
    train = data["train"].to_pandas()
    train["label"] = [names[i] for i in train["label"]]
    health.samples = train.groupby("label", sort=True).head(2).reset_index(drop=True)
    health.samples["text"] = health.samples["text"].str.slice(0, 300)
    keys = {split: pd.Series(list(data[split]["text"])).str.lower().str.strip() for split in data}
    for split in ("validation", "test"):
        shared = keys[split][keys[split].isin(set(keys["train"]))]
        if len(shared):
            health.warnings.append(f"{split}: {len(shared)} texts also appear in train (rows {_rows(shared.index)}); "
                                   f"scores on them overstate generalisation")
    for split in ("validation", "test"):
        counts = health.balance.set_index("class")
        absent = [c for c in names if counts.loc[c, "train"] == 0 and counts.loc[c, split] > 0]
        if absent:
            health.warnings.append(f"{split}: classes {', '.join(absent)} have no training examples")
    small = health.balance[health.balance["train"] < 5]["class"].tolist()
    if small:
        health.warnings.append(f"train: classes {', '.join(small)} have fewer than 5 examples")
    if tokenizer is not None:
        health.lengths = [len(ids) for ids in tokenizer(list(data["train"]["text"]), truncation=False)["input_ids"]]
        health.truncated_share = float(np.mean([n > cfg.max_length for n in health.lengths])) if health.lengths else 0.0
        if health.truncated_share > 0.5:
            health.warnings.append(f"{health.truncated_share:.0%} of train texts exceed max_length={cfg.max_length} "
                                   f"tokens and will be truncated")
    return health
