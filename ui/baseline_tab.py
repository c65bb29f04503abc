"""Tab 2, baseline: the base model scored on the test split before any training, with the floor it must clear."""

from __future__ import annotations

import threading
import time

import gradio as gr
import pandas as pd

import lft_core
from lft_core import LftError
from ui.forms import DataForm, build_config, error, load_data

EMPTY_TABLE = pd.DataFrame(columns=["class", "precision", "recall", "F1", "test texts"])
_SCORING = threading.Lock()
"""One base-model evaluation at a time on this server. An evaluation goes on after its page is reloaded or
closed; a click behind it waits here, where the page can say so, rather than silently in Gradio's queue."""


def create_baseline_tab(data: dict) -> dict:
    gr.Markdown("The pretrained model with a fresh classification head, scored on the held-out test split. "
                "Every fine-tuned result is compared with this number, and with always answering the most frequent "
                "class.")
    run = gr.Button("Evaluate base model", variant="primary")
    summary = gr.Markdown()
    with gr.Row():
        per_class = gr.Dataframe(EMPTY_TABLE, label="Per-class scores", show_row_numbers=False)
        confusion = gr.Plot(label="Confusion matrix")
    form: DataForm = data["form"]
    run.click(lambda values, progress=gr.Progress(): on_baseline(form, values, progress), inputs=form.inputs,
              outputs=[summary, per_class, confusion], concurrency_limit=4, concurrency_id="baseline",
              api_name="baseline")
    return {"summary": summary, "run": run}


def _scoring_progress(progress, scored: list):
    started = time.perf_counter()

    def update(done: int, total: int) -> None:
        scored.append(done)
        elapsed = time.perf_counter() - started
        left = elapsed / max(done, 1) * (total - done)
        progress((done, total), desc=f"scoring test texts: {done:,} of {total:,}, {lft_core.events.duration(elapsed)} elapsed, "
                                     f"about {lft_core.events.duration(left)} left", unit="texts")

    return update


def on_baseline(form: DataForm, values: dict, progress):
    started = time.perf_counter()
    try:
        cfg = build_config(form, values)
        progress(0.02, desc="loading the data")
        data = load_data(cfg)
        waited = 0.0
        if not _SCORING.acquire(blocking=False):
            progress(0.05, desc="waiting for another base-model evaluation on this server to end (one started "
                                "before a reload or from another page); the same settings are then read from it")
            waited = time.perf_counter()
            _SCORING.acquire()
            waited = time.perf_counter() - waited
        try:
            progress(0.08, desc="loading the model")
            scored: list = []
            # kept under saved_adapters/.baselines, so Train reuses it and shows its first loss sooner
            baseline = lft_core.evaluate_base(cfg, data=data, progress=_scoring_progress(progress, scored))
        finally:
            _SCORING.release()
    except LftError as exc:
        raise error(exc) from None
    metrics, names = baseline.metrics, data["test"].features["label"].names
    majority = lft_core.majority_class(data)
    table = pd.DataFrame([{"class": name, "precision": round(s["precision"], 3), "recall": round(s["recall"], 3),
                           "F1": round(s["f1"], 3), "test texts": s["support"]} for name, s in metrics.per_class.items()])
    summary = (f"**Base model:** accuracy **{metrics.accuracy:.3f}**, macro-F1 **{metrics.macro_f1:.3f}** on "
               f"{metrics.n:,} test texts. Always answering '{majority.predicted_share()[0]}' scores accuracy "
               f"{majority.accuracy:.3f} (macro-F1 {majority.macro_f1:.3f}); chance for {len(names)} classes is "
               f"{1 / len(names):.2f}. " + _took(time.perf_counter() - started, waited, bool(scored), metrics.seconds))
    return summary, table, lft_core.report.confusion_single(metrics, names, "Base model (test)")


def _took(seconds: float, waited: float, scored_now: bool, scoring_s: float | None) -> str:
    """How long the click took, and why when it was not the scoring itself: a wait behind another evaluation, or
    scores read from the saved evaluation of the same settings."""
    duration = lft_core.events.duration
    text = f"Took {duration(seconds)}"
    if waited >= 1:
        text += f", {duration(waited)} of it waiting for another evaluation on this server"
    if not scored_now:
        text += (f"; read from the saved evaluation of the same settings (scoring took "
                 f"{duration(scoring_s)} then)" if scoring_s else "; read from the saved evaluation of the same settings")
    return text + "."
