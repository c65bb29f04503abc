"""Compare saved runs: metrics side by side with their statistics, the test rows whose prediction changed, and
live predictions of the base and the fine-tuned model on new text (the models are loaded once and kept)."""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from lft_core import report as reports
from lft_core.errors import LftError
from lft_core.evaluate import METRICS, Metrics
from lft_core.runs import RunFolder
from lft_core.stats import bootstrap_ci, mcnemar_exact


def _predictions(run_dir: str) -> pd.DataFrame:
    return pd.read_csv(RunFolder(run_dir).predictions)


def _correct(frame: pd.DataFrame, column: str = "finetuned_prediction") -> np.ndarray:
    return (frame["label"] == frame[column]).to_numpy()


def summary_table(run_dirs: list[str]) -> pd.DataFrame:
    """One row per run: its scores (every METRICS entry), a bootstrap 95% interval of the accuracy, McNemar's exact
    test against the base and against the best selected run (when they share test rows), and the reload check."""
    if not run_dirs:
        raise LftError("pick at least one saved run to compare")
    loaded = {path: (reports.read_report(path), _predictions(path)) for path in run_dirs}
    best = max(run_dirs, key=lambda p: _correct(loaded[p][1]).mean())
    records = []
    for path, (rep, frame) in loaded.items():
        correct = _correct(frame)
        low, high = bootstrap_ci(correct)
        same_rows = len(frame) == len(loaded[best][1]) and (frame["text"].values == loaded[best][1]["text"].values).all()
        record = {"run": Path(path).name, "method": rep.method.name}
        record.update({f"base {m.label}": _rounded(rep.base, m.key) for m in METRICS})
        record.update({m.label: _rounded(rep.finetuned, m.key) for m in METRICS})
        record.update({
            "95% CI": f"{low:.3f}-{high:.3f}",
            "p vs base": float(f"{mcnemar_exact(correct, _correct(frame, 'base_prediction')):.2g}"),
            "p vs best": float(f"{mcnemar_exact(correct, _correct(loaded[best][1])):.2g}") if same_rows else None,
            "trainable": reports.shown(rep.parameters.trainable, ","),
            "train s": None if rep.timing.train_s is None else round(rep.timing.train_s),
            "reload": rep.reload_check.outcome,
        })
        records.append(record)
    table = pd.DataFrame(records).sort_values(METRICS[0].label, ascending=False, na_position="last")
    scores = [f"base {m.label}" for m in METRICS] + [m.label for m in METRICS]
    table[scores] = table[scores].astype(object).where(table[scores].notna(), reports.NOT_MEASURED)
    return table


def _rounded(metrics: Metrics, key: str) -> float | None:
    """The score to 4 decimals; None for a metric the run's report lacks (saved before it existed)."""
    value = metrics.scores.get(key)
    return None if value is None else round(value, 4)


def changed_rows(run_dir: str, only_class: str | None = None, still_wrong: bool = False,
                 text_chars: int = 90) -> pd.DataFrame:
    """Test rows where base and fine-tuned predictions differ (or, with still_wrong, rows the tuned model gets
    wrong): true label, both predictions and the change in the true class's probability first, the text last."""
    frame = _predictions(run_dir)
    frame["change"] = (frame["finetuned_true_prob"] - frame["base_true_prob"]).round(3)
    if still_wrong:
        frame = frame[frame["finetuned_prediction"] != frame["label"]]
    else:
        frame = frame[frame["base_prediction"] != frame["finetuned_prediction"]]
    if only_class:
        frame = frame[frame["label"] == only_class]
    shown = ["text"] + (["text_pair"] if "text_pair" in frame else [])  # a sentence pair shows both texts
    frame = frame.assign(**{c: _shorten(frame[c], text_chars) for c in shown}).sort_values("change", ascending=False)
    return frame.rename(columns={"label": "true", "base_prediction": "base", "finetuned_prediction": "fine-tuned",
                                 "change": "Δ p(true)"})[["true", "base", "fine-tuned", "Δ p(true)", *shown]]


def _shorten(texts: pd.Series, chars: int) -> pd.Series:
    texts = texts.fillna("").astype(str)
    return texts.str.slice(0, chars) + np.where(texts.str.len() > chars, "…", "")


def example_texts(run_dir: str, n: int = 6) -> list:
    """A test text of each class, shortened, for the live prediction's examples; (text, text_pair) for pairs."""
    picked = _predictions(run_dir).groupby("label", sort=True).head(1).head(n)
    if "text_pair" in picked:
        return [(str(a)[:400], str(b)[:400]) for a, b in zip(picked["text"], picked["text_pair"])]
    return [t[:400] for t in picked["text"]]


def comparison_figures(run_dirs: list[str]):
    """Metric bars (the base, each run, and the last run's references), per-class bars and confusion matrices
    (base vs the last run), and the Pareto plot."""
    loaded = [reports.read_report(path) for path in run_dirs]
    last = loaded[-1]
    rows: dict[str, Metrics] = {"base": loaded[0].base, **{rep.run_name: rep.finetuned for rep in loaded}}
    rows.update({reports.REFERENCE_NAMES.get(k, k): v for k, v in last.references.items()})
    points = [{"run": rep.run_name, "method": rep.method.name, "trainable": rep.parameters.trainable,
               "accuracy": rep.finetuned.scores["accuracy"], "train_s": rep.timing.train_s or 0.0}
              # a report without the accuracy or the parameter count has no point to plot
              for rep in loaded if "accuracy" in rep.finetuned.scores and rep.parameters.trainable is not None]
    # multi-label has no confusion matrix (each label is its own yes/no): per-label F1 is in the per-class chart
    confusion = reports.confusion_pair(last.base, last.finetuned, last.label_names) if last.finetuned.confusion else \
        reports.go.Figure(layout={"title": "Multi-label: no confusion matrix (per-label F1 beside)", "height": 200})
    return (reports.metrics_bar(rows), reports.per_class_bar(last.base, last.finetuned), confusion,
            reports.pareto(points))


class _Pair:
    """The base model exactly as the run scored it (same seed, same fresh head) and the merged adapter."""

    def __init__(self, run_dir: str):
        from lft_core.models import load_base_model
        from lft_core.predict import Predictor

        rep = reports.read_report(run_dir)
        cfg = rep.config
        self.labels, self.max_length = rep.label_names, cfg["max_length"]
        self.truncation = cfg.get("truncation", "head")
        self.tuned = Predictor(run_dir)
        base = load_base_model(cfg["model"], self.labels, seed=cfg["seed"], trust_remote_code=cfg["trust_remote_code"])
        self.base_model, self.base_tokenizer = base.model.eval(), base.tokenizer
        self.lock = threading.Lock()  # torch modules are not safe to call from many request threads at once

    def predict(self, text) -> tuple[dict[str, float], dict[str, float]]:
        """text: a string, or a (text, text_pair) tuple for a sentence-pair run."""
        from lft_core.evaluate import predict_logits, sigmoid, softmax

        texts = self.tuned.check_inputs([text])
        with self.lock:
            logits = predict_logits(self.base_model, self.base_tokenizer, texts, self.max_length, 1, self.truncation)
            base = (sigmoid(logits) if self.tuned.multi_label else softmax(logits))[0]
            tuned = self.tuned.probabilities(texts)[0]
        return (dict(zip(self.labels, base.astype(float).tolist())),
                dict(zip(self.labels, tuned.astype(float).tolist())))


@lru_cache(maxsize=3)
def _pair(run_dir: str) -> _Pair:
    return _Pair(run_dir)


def live_predict(run_dir: str, text: str, text_pair: str | None = None) -> tuple[dict[str, float], dict[str, float]]:
    """Class probabilities of the base and the fine-tuned model for one text, or for one sentence pair (a run
    trained on pairs needs text_pair)."""
    if not text or not text.strip():
        raise LftError("type or paste a text to classify")
    models = _pair(str(Path(run_dir).resolve()))
    if models.tuned.is_pair and not (text_pair or "").strip():
        raise LftError(f"this run reads sentence pairs ({models.tuned.text_column}, {models.tuned.text_pair_column}); "
                       f"type the second text too")
    return models.predict((text, text_pair) if models.tuned.is_pair else text)
