"""Evaluate: token ids for texts (with the run's truncation), logits for a split (length-sorted, dynamically padded,
under inference_mode), and the metrics, each computed through a local `evaluate` module in lft_core/metrics/.

METRICS lists the headline scores; every table, chart, CLI summary and sweep row iterates it, so a new score is
a module in lft_core/metrics/ plus one entry here."""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from lft_core.batching import EVAL_BATCH_TOKENS as BATCH_TOKENS  # the policy lives in batching
from lft_core.errors import StopRequested
from lft_core.records import Record

if TYPE_CHECKING:
    from lft_core.hardware import Compute

METRIC_MODULES = Path(__file__).parent / "metrics"
TRUNCATIONS = ("head", "head+tail", "tail")
HEAD_SHARE = 0.25
"""head+tail keeps this share of the budget from the start of the text and the rest from its end: Sun et al.
(2019, "How to Fine-Tune BERT for Text Classification?") found 128 head + 382 tail tokens best on long reviews."""


@dataclass(frozen=True)
class MetricSpec:
    key: str
    """name in Metrics.scores and in the saved report"""
    label: str
    """how tables and charts name it"""
    module: str
    """folder of its evaluate module in lft_core/metrics/"""
    higher_is_better: bool = True


METRICS = [
    MetricSpec("accuracy", "accuracy", "accuracy"),
    MetricSpec("macro_f1", "macro-F1", "macro_f1"),
]


@dataclass
class Metrics(Record):
    scores: dict[str, float]
    """one value per METRICS key"""
    per_class: dict[str, dict[str, float]]
    """class name -> precision, recall, f1, support"""
    confusion: list[list[int]]
    """rows = true class, columns = predicted class"""
    n: int
    unscored_classes: list[str] = field(default_factory=list)
    """classes with no test example that were never predicted either: macro averages leave them out"""
    seconds: float = 0.0
    tokens: int = 0
    """real (non-pad) tokens scored"""
    multi_label: dict | None = None
    """multi-label runs only: micro_f1, label cardinality (true and predicted labels per text), the decision
    threshold on the sigmoid, and the labels never predicted; None for one label per text"""

    @property
    def accuracy(self) -> float:
        return self.scores["accuracy"]

    @property
    def macro_f1(self) -> float:
        return self.scores["macro_f1"]

    def predicted_share(self) -> tuple[str, float]:
        """The class predicted most often and the share of rows it got."""
        if not self.confusion:  # multi-label: no confusion matrix
            return (next(iter(self.per_class), ""), 0.0)
        columns = np.asarray(self.confusion).sum(0)
        top = int(columns.argmax()) if columns.sum() else 0
        return list(self.per_class)[top], float(columns[top] / max(columns.sum(), 1))

    @classmethod
    def from_dict(cls, values: dict) -> "Metrics":
        values = dict(values)
        if "scores" not in values:  # reports written before scores were grouped
            values["scores"] = {m.key: values.pop(m.key) for m in METRICS if m.key in values}
        return super().from_dict(values)


@functools.lru_cache(maxsize=None)
def _module(name: str):
    import evaluate as hf_evaluate  # the Hugging Face library; this file is lft_core.evaluate

    # keep_in_memory: no Arrow cache files, so parallel runs never share (or lock) one
    return hf_evaluate.load(str(METRIC_MODULES / name), keep_in_memory=True)


def compute_metrics(labels, predictions, names: list[str]) -> Metrics:
    labels, predictions = np.asarray(labels, dtype=np.int64), np.asarray(predictions, dtype=np.int64)
    k = len(names)
    scores = {}
    if len(labels):
        for spec in METRICS:
            scores.update(_module(spec.module).compute(predictions=predictions, references=labels))
        per = _module("per_class").compute(predictions=predictions, references=labels, num_classes=k)
        confusion = _module("confusion").compute(predictions=predictions, references=labels, num_classes=k)["confusion"]
    else:
        scores = {spec.key: 0.0 for spec in METRICS}
        per = {"precision": [0.0] * k, "recall": [0.0] * k, "f1": [0.0] * k, "support": [0] * k}
        confusion = [[0] * k for _ in range(k)]
    per_class = {name: {"precision": per["precision"][i], "recall": per["recall"][i], "f1": per["f1"][i],
                        "support": per["support"][i]} for i, name in enumerate(names)}
    seen = set(labels.tolist()) | set(predictions.tolist())
    return Metrics(scores={m.key: float(scores[m.key]) for m in METRICS}, per_class=per_class, confusion=confusion,
                   n=int(len(labels)), unscored_classes=[n for i, n in enumerate(names) if i not in seen])


# ---------------------------------------------------------------- token ids


class TokenRows(list):
    """Token ids per text (a list of lists, as before), and for sentence pairs the token type ids the tokenizer
    gives the two segments (BERT's segment embeddings), so that padding and training keep them."""

    token_type_ids: list[list[int]] | None = None

    def take(self, rows) -> dict[str, list[list[int]]]:
        """The rows' inputs as tokenizer.pad takes them."""
        picked = {"input_ids": [self[i] for i in rows]}
        if self.token_type_ids is not None:
            picked["token_type_ids"] = [self.token_type_ids[i] for i in rows]
        return picked


def texts_of(dataset) -> list:
    """A split's inputs: its texts, or (text, text_pair) tuples for a sentence-pair split."""
    if "text_pair" in dataset.column_names:
        return list(zip(dataset["text"], dataset["text_pair"]))
    return list(dataset["text"])


def is_pair(texts) -> bool:
    return bool(len(texts)) and isinstance(texts[0], (tuple, list))


def encode_pairs(tokenizer, pairs: list[tuple[str, str]], max_length: int) -> tuple[TokenRows, list[int]]:
    """Token ids of each pair as tokenizer(a, b) builds them (separators and token type ids), cut to max_length by
    transformers' 'longest_first', which trims the longer side token by token so both texts keep a part; and each
    pair's untruncated length."""
    firsts, seconds = [str(a) for a, _ in pairs], [str(b) for _, b in pairs]
    full = tokenizer(firsts, seconds, truncation=False)
    lengths = [len(row) for row in full["input_ids"]]
    long = [i for i, n in enumerate(lengths) if n > max_length]
    if long:
        cut = tokenizer([firsts[i] for i in long], [seconds[i] for i in long], truncation="longest_first",
                        max_length=max_length)
        for key in full.keys():
            for j, i in enumerate(long):
                full[key][i] = cut[key][j]
    ids = TokenRows(full["input_ids"])
    if "token_type_ids" in full:
        ids.token_type_ids = list(full["token_type_ids"])
    return ids, lengths


def encode(tokenizer, texts: list[str], max_length: int, truncation: str = "head") -> tuple[list[list[int]], list[int]]:
    """Token ids of each text cut to max_length (special tokens included), and each text's untruncated length.
    'head' keeps the start (what tokenizer(..., truncation=True) does), 'tail' the end, 'head+tail' both ends
    (HEAD_SHARE of the budget from the start). One tokenizer pass serves the ids and the lengths. Sentence pairs
    ((a, b) tuples) go through encode_pairs whatever `truncation` says."""
    if is_pair(texts):
        return encode_pairs(tokenizer, texts, max_length)
    prefix, suffix = _special_tokens(tokenizer)
    budget = max(1, max_length - len(prefix) - len(suffix))
    head = budget if truncation == "head" else int(budget * HEAD_SHARE) if truncation == "head+tail" else 0
    bare = tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"]
    ids, lengths = [], []
    for row in bare:
        lengths.append(len(row) + len(prefix) + len(suffix))
        if len(row) > budget:
            row = row[:head] + row[len(row) - (budget - head):]
        ids.append(prefix + row + suffix)
    return ids, lengths


def _special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after one text ([CLS] and [SEP] for BERT, <s> for Llama,
    none for GPT-2), found by encoding a probe with and without them."""
    probe = "a"
    framed = tokenizer(probe)["input_ids"]
    bare = tokenizer(probe, add_special_tokens=False)["input_ids"]
    for i in range(len(framed) - len(bare) + 1):
        if framed[i:i + len(bare)] == bare:
            return framed[:i], framed[i + len(bare):]
    return [], []


def count_tokens(ids: list[list[int]]) -> int:
    return int(sum(len(row) for row in ids))


# ---------------------------------------------------------------- scoring


Progress = Callable[[int, int], None]
"""called with (rows done, rows in all) after each batch"""


def _batches(order: np.ndarray, lengths: list[int], batch_size: int | None) -> list[np.ndarray]:
    """Rows in length order, cut into batches of batch_size texts, or (None) of about BATCH_TOKENS tokens."""
    if batch_size is not None:
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    batches, start = [], 0
    while start < len(order):
        size = max(1, BATCH_TOKENS // max(lengths[order[start]], 1))  # the longest text of the batch comes first
        batches.append(order[start:start + size])
        start += size
    return batches


@torch.inference_mode()
def logits_for_ids(model, tokenizer, ids: list[list[int]], batch_size: int | None = None,
                   stop: threading.Event | None = None, progress: Progress | None = None,
                   compute: "Compute | None" = None) -> np.ndarray:
    """Class logits for pre-encoded texts, in input order, on the model's device, in `compute`'s precision
    (autocast; None: the model's own, fp32). Sorting by length makes each batch pad to a similar length. Each
    batch is timed for the thread governor. Raises StopRequested between batches once `stop` is set."""
    from lft_core.hardware import THREADS, call_work

    num_labels = model.config.num_labels
    if not ids:
        return np.zeros((0, num_labels), dtype=np.float32)
    was_training = model.training
    model.eval()
    lengths = [len(row) for row in ids]
    order = np.argsort([-n for n in lengths], kind="stable")
    out = np.zeros((len(ids), num_labels), dtype=np.float32)
    device = next(model.parameters()).device
    done = 0
    try:
        for rows in _batches(order, lengths, batch_size):
            if stop is not None and stop.is_set():
                raise StopRequested("stopped by the user during evaluation")
            batch = tokenizer.pad(_take(ids, rows), return_tensors="pt")
            batch = {k: v.to(device) for k, v in batch.items()}
            with THREADS.timed("eval", call_work(batch["input_ids"].shape)), \
                    (compute.autocast() if compute is not None else contextlib.nullcontext()):
                out[rows] = model(**batch).logits.float().cpu().numpy()
            done += len(rows)
            if progress is not None:
                progress(done, len(order))
    finally:
        model.train(was_training)
    return out


def _take(ids, rows) -> dict:
    return ids.take(rows) if isinstance(ids, TokenRows) else {"input_ids": [ids[i] for i in rows]}


def predict_logits(model, tokenizer, texts: list[str], max_length: int, batch_size: int | None = None,
                   truncation: str = "head", stop: threading.Event | None = None,
                   compute: "Compute | None" = None) -> np.ndarray:
    ids, _ = encode(tokenizer, texts, max_length, truncation)
    return logits_for_ids(model, tokenizer, ids, batch_size, stop, compute=compute)


def evaluate(model, tokenizer, dataset, max_length: int, batch_size: int | None = None, shard: bool = True,
             truncation: str = "head", stop: threading.Event | None = None,
             progress: Progress | None = None, compute: "Compute | None" = None,
             threshold: float = 0.5) -> tuple[Metrics, np.ndarray]:
    """Score a split: returns its metrics and the logits (rows in dataset order), in `compute`'s precision on the
    model's device.

    Under torch.distributed (and shard=True, which every rank must then call) each rank scores a disjoint
    shard and the logits are gathered, so every example counts exactly once (a DistributedSampler would pad
    the last shard with duplicates)."""
    texts, multi = texts_of(dataset), not hasattr(dataset.features["label"], "names")
    names = label_feature(dataset).names
    labels = multi_hot(dataset["label"], len(names)) if multi else np.asarray(dataset["label"])
    start = time.perf_counter()
    ids, _ = encode(tokenizer, texts, max_length, truncation)
    if shard and torch.distributed.is_available() and torch.distributed.is_initialized():
        logits = _sharded_logits(model, tokenizer, ids, batch_size, stop, compute)
    else:
        logits = logits_for_ids(model, tokenizer, ids, batch_size, stop, progress, compute)
    if multi:
        metrics = compute_multi_label_metrics(labels, sigmoid(logits) >= threshold, names, threshold)
    else:
        metrics = compute_metrics(labels, logits.argmax(-1), names)
    metrics.seconds = time.perf_counter() - start
    metrics.tokens = count_tokens(ids)
    return metrics, logits


def _sharded_logits(model, tokenizer, ids, batch_size, stop, compute) -> np.ndarray:
    from accelerate import PartialState
    from accelerate.utils import gather_object

    state = PartialState()
    mine = list(range(state.process_index, len(ids), state.num_processes))
    mine_ids = TokenRows(ids[i] for i in mine)
    if getattr(ids, "token_type_ids", None) is not None:
        mine_ids.token_type_ids = [ids.token_type_ids[i] for i in mine]
    part = logits_for_ids(model, tokenizer, mine_ids, batch_size, stop, compute=compute)
    logits = np.zeros((len(ids), model.config.num_labels), dtype=np.float32)
    for indices, values in gather_object([(mine, part)]):
        if len(indices):
            logits[indices] = values
    return logits


def softmax(logits: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.as_tensor(logits, dtype=torch.float32), dim=-1).numpy()



# ---------------------------------------------------------------- multi-label


THRESHOLDS = np.round(np.arange(0.05, 0.96, 0.05), 2)
"""Decision thresholds tried on the validation split (the one with the best micro-F1 is kept)."""


def label_feature(dataset):
    """The ClassLabel of a split's labels: the 'label' feature, or the one inside a multi-label Sequence."""
    feature = dataset.features["label"]
    return getattr(feature, "feature", feature)


def multi_hot(label_sets, num_labels: int) -> np.ndarray:
    out = np.zeros((len(label_sets), num_labels), dtype=np.float32)
    for row, ids in enumerate(label_sets):
        out[row, list(ids)] = 1.0
    return out


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return torch.sigmoid(torch.as_tensor(logits, dtype=torch.float32)).numpy()


def compute_multi_label_metrics(labels: np.ndarray, predicted: np.ndarray, names: list[str],
                                threshold: float = 0.5) -> Metrics:
    """Subset (exact-match) accuracy, macro-F1 over the labels with a test example or a prediction, micro-F1,
    per-label precision/recall/F1 with support, and the label cardinality, through scikit-learn's multi-label
    metrics. `labels` and `predicted` are 0/1 matrices, one column per label."""
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    labels, predicted = np.asarray(labels, dtype=int), np.asarray(predicted, dtype=int)
    scored = [i for i in range(len(names)) if labels[:, i].any() or predicted[:, i].any()] if len(labels) else []
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=list(range(len(names))), average=None, zero_division=0) if len(labels) else \
        ([0.0] * len(names),) * 3 + ([0] * len(names),)
    scores = {
        "accuracy": float(accuracy_score(labels, predicted)) if len(labels) else 0.0,
        "macro_f1": float(np.mean([f1[i] for i in scored])) if scored else 0.0,
        "micro_f1": float(f1_score(labels, predicted, average="micro", zero_division=0)) if len(labels) else 0.0,
    }
    per_class = {name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                        "support": int(support[i])} for i, name in enumerate(names)}
    return Metrics(scores=scores, per_class=per_class, confusion=[], n=int(len(labels)),
                   unscored_classes=[n for i, n in enumerate(names) if i not in scored],
                   multi_label={"micro_f1": scores["micro_f1"], "subset_accuracy": scores["accuracy"],
                                "cardinality": float(labels.sum(1).mean()) if len(labels) else 0.0,
                                "predicted_cardinality": float(predicted.sum(1).mean()) if len(labels) else 0.0,
                                "threshold": float(threshold),
                                "never_predicted": [n for i, n in enumerate(names)
                                                    if support[i] > 0 and not predicted[:, i].any()]})


def pick_threshold(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """The sigmoid threshold with the best micro-F1 on these (validation) rows; ties go to the one nearest 0.5."""
    from sklearn.metrics import f1_score

    if not len(labels):
        return 0.5
    scores = [f1_score(labels, probabilities >= t, average="micro", zero_division=0) for t in THRESHOLDS]
    best = max(scores)
    return float(min((t for t, f in zip(THRESHOLDS, scores) if f == best), key=lambda t: abs(t - 0.5)))
