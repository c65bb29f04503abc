"""Reference rows beyond the random-head baseline: what needs no training, what a classical model and the
foundation model, untuned, already get right. Always predicting the most frequent class is the floor a verdict
must clear; TF-IDF + logistic regression says whether a transformer is worth it on this data at all; zero-shot
says what the pretrained representation knows before any training."""

from __future__ import annotations

import time

import numpy as np
import torch

from lft_core.evaluate import Metrics, compute_metrics
from lft_core.models import is_decoder, load_tokenizer, resolve_model


def majority_class(data) -> Metrics:
    """Every test text gets the class most frequent in the train split."""
    train = np.asarray(data["train"]["label"])
    labels = np.asarray(data["test"]["label"])
    names = data["test"].features["label"].names
    top = int(np.bincount(train, minlength=len(names)).argmax())
    return compute_metrics(labels, np.full(len(labels), top), names)


class ReferenceUnavailable(Exception):
    """A reference that cannot be computed on this data; the message says why. A reference is context for the
    verdict, so the run skips it and says so rather than fail a model that trained fine."""


def _why_no_tfidf(exc: ValueError, n_train: int) -> str:
    """scikit-learn's reasons in words a user can act on."""
    message = str(exc)
    if "After pruning, no terms remain" in message:
        return (f"no word appears in two or more of the {n_train:,} training texts (TF-IDF keeps only words seen at "
                f"least twice)")
    if "empty vocabulary" in message:
        return ("the training texts hold no words of two or more letters or digits (only emoji, punctuation or "
                "single characters?)")
    return message.splitlines()[0] if message else type(exc).__name__


def tfidf_logreg(data, seed: int = 42) -> Metrics:
    """Word and bigram TF-IDF with a logistic regression, trained on the same train split in seconds.

    Raises ReferenceUnavailable when the train texts give it nothing to learn from (too few, or no words)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    start = time.perf_counter()
    model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                          LogisticRegression(max_iter=2000, C=10.0, random_state=seed))
    texts = [str(t) for t in data["train"]["text"]]
    try:
        model.fit(texts, list(data["train"]["label"]))
    except ValueError as exc:  # sklearn's way to say the vocabulary or the classes are unusable
        raise ReferenceUnavailable(_why_no_tfidf(exc, len(texts))) from None
    predictions = model.predict([str(t) for t in data["test"]["text"]])
    metrics = compute_metrics(np.asarray(data["test"]["label"]), predictions, data["test"].features["label"].names)
    metrics.seconds = time.perf_counter() - start
    return metrics


@torch.inference_mode()
def _mean_embeddings(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 64) -> torch.Tensor:
    out = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(texts[start:start + batch_size], padding=True, truncation=True, max_length=max_length,
                          return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        out.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1))
    return torch.cat(out)


@torch.inference_mode()
def _label_loglik(model, tokenizer, texts: list[str], names: list[str], max_length: int) -> np.ndarray:
    """Sum of log-probabilities of each label name after a short prompt; one row per text."""
    scores = np.zeros((len(texts), len(names)))
    for i, text in enumerate(texts):
        prompt = tokenizer(f"Text: {text}\nCategory:", truncation=True, max_length=max_length)["input_ids"]
        for j, name in enumerate(names):
            answer = tokenizer(f" {name}", add_special_tokens=False)["input_ids"]
            ids = torch.tensor([prompt + answer])
            logits = model(input_ids=ids).logits[0, len(prompt) - 1:-1].log_softmax(-1)
            scores[i, j] = float(logits[torch.arange(len(answer)), torch.tensor(answer)].sum())
    return scores


def zero_shot(model_name: str, data, max_length: int) -> Metrics:
    """Encoders: the nearest label-name embedding (mean pooling, as sentence-embedding models are trained).
    Decoders: the label name with the highest log-likelihood after a prompt."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    source = resolve_model(model_name)
    tokenizer = load_tokenizer(source)
    names = data["test"].features["label"].names
    texts = list(data["test"]["text"])
    start = time.perf_counter()
    if is_decoder(AutoConfig.from_pretrained(source)):
        model = AutoModelForCausalLM.from_pretrained(source).eval()
        scores = _label_loglik(model, tokenizer, texts, names, max_length)
    else:
        model = AutoModel.from_pretrained(source).eval()
        label_vectors = _mean_embeddings(model, tokenizer, [n.replace("_", " ") for n in names], max_length)
        scores = (_mean_embeddings(model, tokenizer, texts, max_length) @ label_vectors.T).numpy()
    metrics = compute_metrics(np.asarray(data["test"]["label"]), scores.argmax(-1), names)
    metrics.seconds = time.perf_counter() - start
    return metrics
