"""Compare saved runs: metrics side by side, the rows whose prediction changed, and live predictions of the
base and the fine-tuned model on new text (the models are loaded once and kept)."""

from __future__ import annotations

import json
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from lft_core import report as reports
from lft_core.errors import LftError
from lft_core.runs import read_report


def metrics_rows(run_dirs: list[str]) -> dict[str, dict]:
    """'base' (from the first run) plus each run's fine-tuned test metrics, keyed by run name."""
    if not run_dirs:
        raise LftError("pick at least one saved run to compare")
    reports_ = [read_report(d) for d in run_dirs]
    rows = {"base": reports_[0]["base_metrics"]}
    for path, rep in zip(run_dirs, reports_):
        rows[Path(path).name] = rep["finetuned_metrics"]
    return rows


def _correct(run_dir: str, column: str = "finetuned_prediction") -> np.ndarray:
    frame = pd.read_csv(Path(run_dir) / "test_predictions.csv")
    return (frame["label"] == frame[column]).to_numpy()


def summary_table(run_dirs: list[str]) -> pd.DataFrame:
    """One row per run, with a bootstrap 95% interval and McNemar's exact test against the base and the best
    of the selected runs (runs of one sweep share their test rows; others are compared when sizes match)."""
    from lft_core.sweep import bootstrap_ci, mcnemar_exact

    records = []
    correct = {path: _correct(path) for path in run_dirs}
    best = max(run_dirs, key=lambda p: correct[p].mean())
    for path in run_dirs:
        rep = read_report(path)
        low, high = bootstrap_ci(correct[path])
        same_rows = len(correct[path]) == len(correct[best])
        records.append({
            "run": Path(path).name, "method": rep["config"]["method"],
            "base acc": round(rep["base_metrics"]["accuracy"], 4),
            "tuned acc": round(rep["finetuned_metrics"]["accuracy"], 4),
            "tuned macro-F1": round(rep["finetuned_metrics"]["macro_f1"], 4),
            "trainable params": rep["parameters"]["trainable"],
            "train s": round(rep["timing"]["train_s"], 1),
            "peak MB": round(rep["peak_memory_mb"]),
            "reload |diff|": f"{rep['reload_check']['max_abs_diff']:.1e}",
            "reload check": "passed" if rep["reload_check"]["passed"] else "FAILED",
            "95% CI": f"{low:.3f}-{high:.3f}",
            "McNemar p vs base": round(mcnemar_exact(correct[path], _correct(path, "base_prediction")), 4),
            "p vs best": round(mcnemar_exact(correct[path], correct[best]), 4) if same_rows else None,
        })
    return pd.DataFrame(records).sort_values("tuned acc", ascending=False)


def changed_rows(run_dir: str, only_class: str | None = None, still_wrong: bool = False) -> pd.DataFrame:
    """Test rows where base and fine-tuned predictions differ (or, with still_wrong, rows the tuned model gets
    wrong), with the change in the true class's probability, largest gain first."""
    frame = pd.read_csv(Path(run_dir) / "test_predictions.csv")
    frame["change"] = (frame["finetuned_true_prob"] - frame["base_true_prob"]).round(4)
    if still_wrong:
        frame = frame[frame["finetuned_prediction"] != frame["label"]]
    else:
        frame = frame[frame["base_prediction"] != frame["finetuned_prediction"]]
    if only_class:
        frame = frame[frame["label"] == only_class]
    frame = frame.assign(text=frame["text"].str.slice(0, 200))
    return frame.sort_values("change", ascending=False)[
        ["text", "label", "base_prediction", "finetuned_prediction", "base_true_prob", "finetuned_true_prob", "change"]]


def example_texts(run_dir: str, n: int = 5) -> list[str]:
    frame = pd.read_csv(Path(run_dir) / "test_predictions.csv")
    picked = frame.groupby("label", sort=True).head(1).head(n)
    return [t[:500] for t in picked["text"]]


class _Pair:
    """The base model exactly as the run scored it (same seed, same fresh head) and the merged adapter."""

    def __init__(self, run_dir: str):
        from lft_core.models import load_base_model
        from lft_core.predict import Predictor

        rep = read_report(run_dir)
        cfg = rep["config"]
        self.labels = rep["data"]["label_names"]
        self.max_length = cfg["max_length"]
        self.tuned = Predictor(run_dir)
        base = load_base_model(cfg["model"], self.labels, seed=cfg["seed"], trust_remote_code=cfg["trust_remote_code"])
        self.base_model, self.base_tokenizer = base.model.eval(), base.tokenizer
        self.lock = threading.Lock()  # torch modules are not safe to call from many request threads at once

    def predict(self, text: str) -> tuple[dict[str, float], dict[str, float]]:
        from lft_core.evaluate import predict_logits, softmax

        with self.lock:
            base = softmax(predict_logits(self.base_model, self.base_tokenizer, [text], self.max_length))[0]
            tuned = self.tuned.probabilities([text])[0]
        return (dict(zip(self.labels, base.astype(float).tolist())),
                dict(zip(self.labels, tuned.astype(float).tolist())))


@lru_cache(maxsize=3)
def _pair(run_dir: str) -> _Pair:
    return _Pair(run_dir)


def live_predict(run_dir: str, text: str) -> tuple[dict[str, float], dict[str, float]]:
    """Class probabilities of the base and the fine-tuned model for one text."""
    if not text or not text.strip():
        raise LftError("type or paste a text to classify")
    return _pair(str(Path(run_dir).resolve())).predict(text)


def comparison_figures(run_dirs: list[str]):
    """Metric bars, per-class bars and confusion matrices (base vs the last run), and the Pareto plot."""
    from lft_core.sweep import pareto

    rows = metrics_rows(run_dirs)
    first = read_report(run_dirs[0])
    names = first["data"]["label_names"]
    last = rows[Path(run_dirs[-1]).name]
    points = []
    for path in run_dirs:
        rep = read_report(path)
        points.append({"run": Path(path).name, "method": rep["config"]["method"], "trainable": rep["parameters"]["trainable"],
                       "accuracy": rep["finetuned_metrics"]["accuracy"], "train_s": rep["timing"]["train_s"]})
    return (reports.metrics_bar(rows), reports.per_class_bar(rows["base"], last),
            reports.confusion_pair(rows["base"], last, names), pareto(points))


def run_history(run_dir: str):
    rep = read_report(run_dir)
    return reports.training_curves(rep["history"]["losses"], rep["history"]["epochs"])


def events(path: Path, offset: int = 0) -> tuple[list[dict], int]:
    """New JSONL events after byte `offset`; a half-written last line waits for the next call."""
    if not Path(path).exists():
        return [], offset
    with open(path, "rb") as f:
        f.seek(offset)
        chunk = f.read()
    end = chunk.rfind(b"\n") + 1
    lines = chunk[:end].decode("utf-8", errors="replace").splitlines()
    return [json.loads(line) for line in lines if line.strip()], offset + end
