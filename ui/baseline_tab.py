"""Tab 2, baseline: the base model scored on the test split before any training."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from lft_core import LftError, report
from lft_core.runs import adapters_root
from ui.state import as_gradio_error, data_config


def create_baseline_tab(data: dict) -> dict:
    gr.Markdown("The pretrained model with a fresh classification head, scored on the held-out test split. "
                "Every fine-tuned result is compared with this number.")
    run = gr.Button("Evaluate base model", variant="primary")
    summary = gr.Markdown()
    with gr.Row():
        per_class = gr.Dataframe(label="Per-class scores")
        confusion = gr.Plot(label="Confusion matrix")
    run.click(on_baseline, inputs=data["inputs"], outputs=[summary, per_class, confusion], concurrency_limit=1,
              concurrency_id="baseline", api_name="baseline")
    return {"summary": summary}


def on_baseline(*values, progress=gr.Progress()):
    from lft_core.engine import baseline  # heavy (transformers, peft): imported on first use, not at start-up

    try:
        cfg = data_config(*values)
        progress(0.2, desc="loading data and model, then scoring the test split")
        # kept, so that Train can reuse it and show its first loss sooner
        metrics, names = baseline(cfg, keep_in=adapters_root() / ".baselines")
    except LftError as exc:
        raise as_gradio_error(exc) from None
    table = pd.DataFrame([{"class": name, **{k: round(v, 4) for k, v in scores.items()}}
                          for name, scores in metrics.per_class.items()])
    summary = (f"**Base model:** accuracy **{metrics.accuracy:.4f}**, macro-F1 **{metrics.macro_f1:.4f}** on "
               f"{metrics.n} test texts ({metrics.seconds:.1f} s). Chance for {len(names)} classes is "
               f"about {1 / len(names):.2f}.")
    return summary, table, report.confusion_single(metrics.to_dict(), names, "Base model (test)")
