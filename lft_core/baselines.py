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


def joined_texts(split) -> list[str]:
    """One string per row for the models that read a single text: a sentence pair's two texts joined with
    data.PAIR_JOIN (TF-IDF then sees both sides' words, in one bag, as the report's pair_join says)."""
    from lft_core.data import PAIR_JOIN

    if "text_pair" in split.column_names:
        return [f"{a}{PAIR_JOIN}{b}" for a, b in zip(split["text"], split["text_pair"])]
    return list(split["text"])


def _is_multi_label(data) -> bool:
    return not hasattr(data["train"].features["label"], "names")


def frequent_labels(data) -> Metrics:
    """Multi-label: every test text gets the labels on more than half of the training texts (often none)."""
    from lft_core.evaluate import compute_multi_label_metrics, label_feature, multi_hot

    names = label_feature(data["train"]).names
    train, test = multi_hot(data["train"]["label"], len(names)), multi_hot(data["test"]["label"], len(names))
    frequent = train.mean(0) > 0.5
    return compute_multi_label_metrics(test, np.tile(frequent, (len(test), 1)), names)


def tfidf_one_vs_rest(data, seed: int = 42) -> Metrics:
    """Multi-label: the same TF-IDF features, one logistic regression per label (scikit-learn's OneVsRest), each
    label predicted at probability 0.5."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline

    from lft_core.evaluate import compute_multi_label_metrics, label_feature, multi_hot

    start = time.perf_counter()
    names = label_feature(data["train"]).names
    train = multi_hot(data["train"]["label"], len(names))
    # a label on every or no training text leaves one class to fit: LogisticRegression refuses it, so predict it as is
    fit = [i for i in range(len(names)) if 0 < train[:, i].sum() < len(train)]
    predictions = np.tile(train[0], (len(data["test"]), 1))
    if fit:
        model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                              OneVsRestClassifier(LogisticRegression(max_iter=2000, C=10.0, random_state=seed)))
        texts = joined_texts(data["train"])
        try:
            model.fit(texts, train[:, fit])
        except ValueError as exc:  # no usable vocabulary: the same reasons as the single-label reference
            raise ReferenceUnavailable(_why_no_tfidf(exc, len(texts))) from None
        predictions[:, fit] = model.predict(joined_texts(data["test"]))
    metrics = compute_multi_label_metrics(multi_hot(data["test"]["label"], len(names)), predictions, names)
    metrics.seconds = time.perf_counter() - start
    return metrics


def majority_class(data) -> Metrics:
    """Every test text gets the class most frequent in the train split (multi-label: the labels on more than half
    of the training texts)."""
    if _is_multi_label(data):
        return frequent_labels(data)
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
    """Word and bigram TF-IDF with a logistic regression, trained on the same train split in seconds (multi-label:
    one per label).

    Raises ReferenceUnavailable when the train texts give it nothing to learn from (too few, or no words)."""
    if _is_multi_label(data):
        return tfidf_one_vs_rest(data, seed)
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    start = time.perf_counter()
    model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                          LogisticRegression(max_iter=2000, C=10.0, random_state=seed))
    texts = joined_texts(data["train"])
    try:
        model.fit(texts, list(data["train"]["label"]))
    except ValueError as exc:  # sklearn's way to say the vocabulary or the classes are unusable
        raise ReferenceUnavailable(_why_no_tfidf(exc, len(texts))) from None
    predictions = model.predict(joined_texts(data["test"]))
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

    if _is_multi_label(data):  # nearest label name / likeliest label picks one label; label sets need a threshold
        raise ValueError("the zero-shot reference picks one label per text; it is not computed for multi-label data")
    source = resolve_model(model_name)
    tokenizer = load_tokenizer(source)
    names = data["test"].features["label"].names
    texts = joined_texts(data["test"])
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
