"""Batch inference with a saved run folder. Input streams in batches, so memory stays bounded for any size."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from lft_core.data import TEXT_CANDIDATES
from lft_core.errors import LftError
from lft_core.evaluate import predict_logits, softmax


class Predictor:
    """A loaded adapter (merged for speed) that labels texts."""

    def __init__(self, adapter_dir: str | Path, max_length: int | None = None, allow_pickle: bool = False):
        from lft_core.models import load_adapter

        self.model, self.tokenizer = load_adapter(adapter_dir, merge=True, allow_pickle=allow_pickle)
        run_config = Path(adapter_dir) / "run_config.json"
        saved = json.loads(run_config.read_text()).get("max_length") if run_config.exists() else None
        self.max_length = max_length or saved or 512
        self.labels = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]

    def probabilities(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        return softmax(predict_logits(self.model, self.tokenizer, texts, self.max_length, batch_size))

    def predict(self, texts: list[str], batch_size: int = 64) -> pd.DataFrame:
        probs = self.probabilities(texts, batch_size)
        best = probs.argmax(-1)
        return pd.DataFrame({"text": texts, "label": [self.labels[i] for i in best],
                             "probability": probs[np.arange(len(texts)), best].round(4)})


def _chunks(source: str, text_column: str | None, size: int) -> Iterator[list[str]]:
    if source == "-":
        lines = (line.rstrip("\n") for line in sys.stdin)
        yield from _batched((line for line in lines if line.strip()), size)
        return
    path = Path(source)
    if not path.is_file():
        raise LftError(f"input {source} does not exist; pass a csv, jsonl or txt file, or - for stdin")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            for frame in pd.read_csv(path, chunksize=size):
                yield frame[_text_column(frame, text_column, path)].fillna("").astype(str).tolist()
        elif suffix in (".jsonl", ".json"):
            for frame in pd.read_json(path, lines=True, chunksize=size):
                yield frame[_text_column(frame, text_column, path)].fillna("").astype(str).tolist()
        elif suffix == ".txt":
            with path.open(encoding="utf-8") as f:
                yield from _batched((line.rstrip("\n") for line in f if line.strip()), size)
        else:
            raise LftError(f"input {path}: unsupported type '{suffix}'; use .csv, .jsonl or .txt")
    except UnicodeDecodeError:
        raise LftError(f"input {path} is not UTF-8 text; re-save it as UTF-8") from None
    except (pd.errors.ParserError, ValueError) as exc:
        raise LftError(f"could not read {path}: {str(exc).splitlines()[0]}") from None


def _text_column(frame: pd.DataFrame, given: str | None, path: Path) -> str:
    if given:
        if given not in frame.columns:
            raise LftError(f"--text-column '{given}' is not in {path}; columns: {', '.join(map(str, frame.columns))}")
        return given
    named = [c for c in frame.columns if str(c).lower() in TEXT_CANDIDATES]
    if len(named) == 1:
        return named[0]
    raise LftError(f"cannot tell the text column of {path}; pass --text-column (columns: {', '.join(map(str, frame.columns))})")


def _batched(items, size: int) -> Iterator[list[str]]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def predict_stream(adapter_dir: str, source: str, text_column: str | None = None, batch_size: int = 64,
                   max_length: int | None = None, allow_pickle: bool = False) -> Iterator[pd.DataFrame]:
    """Yield one labelled frame per batch of input; the row index continues across batches."""
    predictor = Predictor(adapter_dir, max_length, allow_pickle)
    offset = 0
    for texts in _chunks(source, text_column, batch_size * 16):
        frame = predictor.predict(texts, batch_size)
        frame.index += offset
        offset += len(frame)
        yield frame
