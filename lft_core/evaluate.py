"""Evaluate: logits for a split (length-sorted, dynamically padded, under inference_mode) and the metrics."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

log = logging.getLogger("lft_core")


@dataclass
class Metrics:
    accuracy: float
    macro_f1: float
    per_class: dict[str, dict[str, float]]
    """class name -> precision, recall, f1, support"""
    confusion: list[list[int]]
    """rows = true class, columns = predicted class"""
    n: int
    seconds: float = 0.0
    tokens: int = 0
    """real (non-pad) tokens scored"""

    def to_dict(self) -> dict:
        return asdict(self)


def compute_metrics(labels: np.ndarray, predictions: np.ndarray, names: list[str]) -> Metrics:
    ids = list(range(len(names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions, labels=ids, zero_division=0
    )
    per_class = {
        name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(names, precision, recall, f1, support)
    }
    return Metrics(
        accuracy=float(accuracy_score(labels, predictions)),
        macro_f1=float(f1_score(labels, predictions, labels=ids, average="macro", zero_division=0)),
        per_class=per_class,
        confusion=confusion_matrix(labels, predictions, labels=ids).tolist(),
        n=int(len(labels)),
    )


def _device(model) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def predict_logits(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 64) -> np.ndarray:
    """Class logits for texts, in input order. Sorting by length makes each batch pad to a similar length."""
    if not texts:
        return np.zeros((0, model.config.num_labels), dtype=np.float32)
    was_training = model.training
    model.eval()
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    order = np.argsort([-len(ids) for ids in encoded], kind="stable")
    out = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    device = _device(model)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        batch = tokenizer.pad({"input_ids": [encoded[i] for i in rows]}, return_tensors="pt")
        batch = {k: v.to(device) for k, v in batch.items()}
        out[rows] = model(**batch).logits.float().cpu().numpy()
    model.train(was_training)
    return out


def count_tokens(tokenizer, texts: list[str], max_length: int) -> int:
    return int(sum(len(ids) for ids in tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]))


def evaluate(model, tokenizer, dataset, max_length: int, batch_size: int = 64,
             shard: bool = True) -> tuple[Metrics, np.ndarray]:
    """Score a split: returns its metrics and the logits (rows in dataset order).

    Under torch.distributed (and shard=True, which every rank must then call) each rank scores a disjoint
    shard and the logits are gathered, so every example counts exactly once (a DistributedSampler would pad
    the last shard with duplicates).
    """
    texts, labels = dataset["text"], np.asarray(dataset["label"])
    names = dataset.features["label"].names
    start = time.perf_counter()
    if shard and torch.distributed.is_available() and torch.distributed.is_initialized():
        logits = _sharded_logits(model, tokenizer, texts, max_length, batch_size)
    else:
        logits = predict_logits(model, tokenizer, texts, max_length, batch_size)
    metrics = compute_metrics(labels, logits.argmax(-1), names)
    metrics.seconds = time.perf_counter() - start
    metrics.tokens = count_tokens(tokenizer, texts, max_length)
    return metrics, logits


def _sharded_logits(model, tokenizer, texts, max_length, batch_size) -> np.ndarray:
    dist = torch.distributed
    rank, world = dist.get_rank(), dist.get_world_size()
    mine = list(range(rank, len(texts), world))
    part = predict_logits(model, tokenizer, [texts[i] for i in mine], max_length, batch_size)
    gathered = [None] * world
    dist.all_gather_object(gathered, (mine, part))
    logits = np.zeros((len(texts), part.shape[1] if len(part) else model.config.num_labels), dtype=np.float32)
    for indices, values in gathered:
        if len(indices):
            logits[indices] = values
    return logits


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)
