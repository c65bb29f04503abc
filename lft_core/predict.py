"""Batch inference with a saved run folder. Input streams in batches, so memory stays bounded for any size."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from lft_core.config import MIN_MAX_LENGTH
from lft_core.data import detect_text_column, first_bad_json_line, warn_ignored_text_columns
from lft_core.errors import LftError, first_line
from lft_core.evaluate import predict_logits, sigmoid, softmax
from lft_core.runs import RunFolder


class Predictor:
    """A loaded adapter (merged for speed) that labels texts."""

    def __init__(self, adapter_dir: str | Path, max_length: int | None = None, allow_pickle: bool = False,
                 precision: str | None = None):
        """`precision`: None scores as the run's test scores were (its report's precision, on a GPU where there is
        one), so predictions reproduce the run's recorded test predictions; 'fp32' or 'bf16' ask for one."""
        from lft_core.hardware import choose_compute
        from lft_core.models import max_positions
        from lft_core.runs import BaseRef, check_adapter_dir, load_adapter

        check_adapter_dir(adapter_dir, allow_pickle)
        saved = _saved_max_length(Path(adapter_dir))
        self.max_length = max_length or saved or 512
        self.model, self.tokenizer = load_adapter(adapter_dir, merge=True, allow_pickle=allow_pickle)
        limit = max_positions(self.model.config)
        if limit is not None and self.max_length > limit:
            raise LftError(f"--max-length {self.max_length} is more than this model takes ({limit} tokens); use at most {limit}")
        self.truncation = _saved(Path(adapter_dir), "truncation") or "head"
        # the run's text columns (run folders before sentence pairs record none: single texts)
        self.text_column = _saved(Path(adapter_dir), "text_column")
        self.text_pair_column = _saved(Path(adapter_dir), "text_pair_column")
        # multi-label: the head's problem type and threshold, from the base reference (None: one label per text)
        ref = BaseRef.read(Path(adapter_dir))
        self.threshold = ref.threshold if ref and ref.problem_type == "multi_label_classification" else None
        if self.threshold is None and getattr(self.model.config, "problem_type", None) == "multi_label_classification":
            self.threshold = _report_threshold(Path(adapter_dir))  # plain methods save no base reference
        self.labels = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]
        self.compute = choose_compute(precision or _scored_in(Path(adapter_dir)))
        self.model.to(self.compute.device)

    @property
    def multi_label(self) -> bool:
        return self.threshold is not None

    def probabilities(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        """One probability per class (softmax), or for multi-label one per label (sigmoid)."""
        texts = [tuple(clip_text(t, self.max_length, self.truncation) for t in text) if isinstance(text, tuple)
                 else clip_text(text, self.max_length, self.truncation) for text in texts]
        logits = predict_logits(self.model, self.tokenizer, texts, self.max_length, batch_size, self.truncation,
                                compute=self.compute)
        return sigmoid(logits) if self.multi_label else softmax(logits)

    def predict(self, texts: list, batch_size: int | None = None, every_class: bool = False) -> pd.DataFrame:
        """texts: strings, or (text, text_pair) tuples for a sentence-pair run."""
        texts = self.check_inputs(texts)
        probs = self.probabilities(texts, batch_size)
        if self.multi_label:
            return self._label_sets(texts, probs)
        best = probs.argmax(-1)
        frame = pd.DataFrame({**_text_columns(texts), "label": [self.labels[i] for i in best],
                              "probability": probs[np.arange(len(texts)), best].round(4)})
        if every_class:
            for i, name in enumerate(self.labels):
                frame[f"p_{name}"] = probs[:, i].round(4)
        return frame


    def _label_sets(self, texts: list, probs: np.ndarray) -> pd.DataFrame:
        """Multi-label: each text's label set (joined with ';', possibly empty) and every label's probability."""
        from lft_core.engine import LABEL_JOIN

        chosen = probs >= self.threshold
        frame = pd.DataFrame({**_text_columns(texts),
                              "labels": [LABEL_JOIN.join(n for n, on in zip(self.labels, row) if on) for row in chosen]})
        for i, name in enumerate(self.labels):
            frame[f"p_{name}"] = probs[:, i].round(4)
        return frame

    @property
    def is_pair(self) -> bool:
        return bool(self.text_pair_column)

    def check_inputs(self, texts: list) -> list:
        """Pairs for a pair run, single texts for the others: anything else is one LftError saying what to give."""
        pairs = [isinstance(t, (tuple, list)) for t in texts]
        if self.is_pair and not all(pairs):
            raise LftError(f"this run reads sentence pairs ({self.text_column}, {self.text_pair_column}); give both "
                           f"texts: a csv/jsonl file with those two columns, or two boxes in the app")
        if not self.is_pair and any(pairs):
            raise LftError("this run reads single texts, not pairs; give one text per row")
        if self.is_pair:
            empty = [i for i, (a, b) in enumerate(texts) if (str(a).strip() == "") != (str(b).strip() == "")]
            if empty:
                raise LftError(f"pair {empty[0] + 1} has one side empty; give both texts of every pair")
            return [(str(a), str(b)) for a, b in texts]
        return texts


CHARS_PER_TOKEN = 32
"""Characters kept per token of max_length before tokenizing: far more than any tokenizer's pieces need (English
averages ~4 a token), so the kept tokens are the same, while a line of many megabytes is never tokenized whole
(its encoding, offsets and ids took gigabytes)."""


def clip_text(text: str, max_length: int, truncation: str = "head") -> str:
    """The part of a text that truncation can keep: its start, its end, or both, CHARS_PER_TOKEN a token."""
    keep = max_length * CHARS_PER_TOKEN
    if len(text) <= keep:
        return text
    if truncation == "tail":
        return text[-keep:]
    if truncation == "head+tail":
        return text[:keep // 2] + " " + text[-(keep // 2):]
    return text[:keep]


def _scored_in(folder: Path) -> str:
    """The precision the run's test scores were computed in ('fp32' for folders saved before it was recorded)."""
    report = _report(folder)
    return report.scoring.precision if report else "fp32"


def _report(folder: Path):
    """The run's report; None for a folder without one (an export, another tool's) or with a damaged one."""
    from lft_core.report import read_report

    if not RunFolder(folder).report.exists():
        return None
    try:
        return read_report(folder)
    except LftError:
        return None


def _text_columns(texts: list) -> dict:
    if texts and isinstance(texts[0], tuple):
        return {"text": [a for a, _ in texts], "text_pair": [b for _, b in texts]}
    return {"text": texts}


def _pair_columns(frame: pd.DataFrame, predictor: "Predictor", text_column: str | None,
                  text_pair_column: str | None) -> tuple[str, str]:
    """The two text columns of an input file for a pair run: the flags, else the run's own column names, else a
    standard pair of names."""
    from lft_core.data import detect_pair_columns

    first = text_column or (predictor.text_column if predictor.text_column in frame.columns else None)
    second = text_pair_column or (predictor.text_pair_column if predictor.text_pair_column in frame.columns else None)
    if first and second:
        found = detect_pair_columns(frame, first, second)
    else:
        found = detect_pair_columns(frame, None, second) if second else detect_pair_columns(frame)
    if found is None:
        raise LftError(f"this run reads sentence pairs ({predictor.text_column}, {predictor.text_pair_column}) but the "
                       f"input has no such columns (columns: {', '.join(map(str, frame.columns))}); pass "
                       f"--text-column and --text-pair-column")
    return found


def _report_threshold(folder: Path) -> float:
    report = _report(folder)
    multi_label = report.finetuned.multi_label if report else None
    return float(multi_label.get("threshold", 0.5)) if multi_label else 0.5


def _saved(folder: Path, key: str):
    path = RunFolder(folder).saved_config
    try:
        return json.loads(path.read_text()).get(key) if path.exists() else None
    except ValueError:
        return None


def _saved_max_length(folder: Path) -> int | None:
    return _saved(folder, "max_length")


def _stdin_lines() -> Iterator[str]:
    """Lines of stdin as UTF-8, strictly: binary input is one clear error, not a tokenizer crash."""
    for number, raw in enumerate(sys.stdin.buffer, 1):
        try:
            line = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise LftError(f"stdin is not UTF-8 text (line {number}); pass text, one per line, or a csv/jsonl file") from None
        if "\x00" in line:
            raise LftError(f"stdin holds binary data (a NUL byte on line {number}); pass text, one per line")
        if line.strip():
            yield line


def _chunks(source: str, text_column: str | None, size: int, predictor: "Predictor | None" = None,
            text_pair_column: str | None = None) -> Iterator[list]:
    pair = predictor is not None and getattr(predictor, "is_pair", False)  # an ONNX export reads single texts
    if pair and (source == "-" or Path(source).suffix.lower() == ".txt"):
        raise LftError(f"this run reads sentence pairs ({predictor.text_column}, {predictor.text_pair_column}); pass a "
                       f"csv or jsonl file with both columns, not {'stdin' if source == '-' else 'a txt file'}")
    if source == "-":
        yield from _batched(_stdin_lines(), size)
        return
    path = Path(source)
    if not path.is_file():
        raise LftError(f"input {source} does not exist; pass a csv, jsonl or txt file, or - for stdin")
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv"):
            reader = pd.read_csv(path, chunksize=size, sep="\t" if suffix == ".tsv" else ",")
        elif suffix in (".jsonl", ".json"):
            reader = pd.read_json(path, lines=True, chunksize=size)
        elif suffix == ".txt":
            with path.open(encoding="utf-8") as f:
                yield from _batched((line.rstrip("\r\n") for line in f if line.strip()), size)
            return
        else:
            raise LftError(f"input {path}: unsupported type '{suffix}'; use .csv, .jsonl or .txt")
        column = None
        for frame in reader:
            if pair:
                first, second = _pair_columns(frame, predictor, text_column, text_pair_column)
                yield list(zip(frame[first].fillna("").astype(str), frame[second].fillna("").astype(str)))
                continue
            if column is None:  # chosen once, on the first rows, and said once
                column = detect_text_column(frame, text_column)
                if text_column is None:
                    warn_ignored_text_columns(frame, column)
            elif column not in frame.columns:
                raise LftError(f"input {path}: column '{column}' is missing after row {len(frame)}; check the file")
            yield frame[column].fillna("").astype(str).tolist()
    except UnicodeDecodeError:
        raise LftError(f"input {path} is not UTF-8 text; re-save it as UTF-8") from None
    except pd.errors.EmptyDataError:
        raise LftError(f"input {path} is empty; it needs a header row and at least one text") from None
    except (pd.errors.ParserError, ValueError) as exc:
        bad = first_bad_json_line(path)
        if bad:
            raise LftError(f"could not read {path}: not valid JSON Lines at {bad}; fix or remove that line") from None
        raise LftError(f"could not read {path}: {first_line(exc)}") from None


def _batched(items, size: int) -> Iterator[list[str]]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def predict_stream(adapter_dir: str, source: str, text_column: str | None = None, batch_size: int | None = None,
                   max_length: int | None = None, allow_pickle: bool = False,
                   every_class: bool = False, text_pair_column: str | None = None,
                   backend: str = "torch") -> Iterator[pd.DataFrame]:
    """Yield one labelled frame per batch of input; the row index continues across batches. Raises LftError for
    a bad folder, input or option, and for input with no texts at all."""
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise LftError(f"--batch-size must be a positive integer (got {batch_size})")
    if max_length is not None and max_length < MIN_MAX_LENGTH:
        raise LftError(f"--max-length must be at least {MIN_MAX_LENGTH} tokens (got {max_length}): a text needs its "
                       f"special tokens and some words")
    from lft_core.hardware import keep_freed_memory

    keep_freed_memory()  # a batch job of its own (the CLI's predict): its calls reuse the same large blocks
    if backend == "onnx":
        from lft_core.export import OnnxPredictor

        predictor = OnnxPredictor(adapter_dir, max_length)
    else:
        predictor = Predictor(adapter_dir, max_length, allow_pickle)
    offset = 0
    for texts in _chunks(source, text_column, (batch_size or 8) * 16, predictor, text_pair_column):
        if not texts:
            continue
        frame = predictor.predict(texts, batch_size, every_class)
        frame.index += offset
        offset += len(frame)
        yield frame
    if offset == 0:
        where = "stdin" if source == "-" else source
        raise LftError(f"no texts to predict in {where}; give one text per line, or a csv/jsonl file with a text column")


def predict_file(adapter_dir: str, source: str, text_column: str | None = None) -> Path:
    """Label every text of a csv/jsonl/txt file; returns a csv beside nothing of the user's (a temporary folder)
    with the text, the predicted label, its probability and one probability column per class."""
    frames = list(predict_stream(adapter_dir, source, text_column, every_class=True))
    # the run's name in the file's, so a download says which adapter labelled it
    target = (Path(tempfile.mkdtemp(prefix="lft-predictions-"))
              / f"{Path(source).stem}-{Path(adapter_dir).name}-predictions.csv")
    pd.concat(frames).to_csv(target, index=False)
    return target
