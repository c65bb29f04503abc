"""Tab 1, model and data: pick or type a model and a dataset, or upload a file, then check the data's health."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pandas as pd

from lft_core import DATASETS, MODELS, LftError, RunConfig, report
from lft_core.data import TEXT_CANDIDATES, LABEL_CANDIDATES, read_local_file
from lft_core.health import check_dataset
from lft_core.models import load_tokenizer, resolve_model
from ui.state import as_gradio_error, data_config, keep_upload


DEFAULTS = RunConfig()


def create_data_tab() -> dict:
    with gr.Row():
        model = gr.Dropdown(list(MODELS), value="minilm", allow_custom_value=True, label="Model",
                            info="built-in (offline), a Hugging Face Hub name, or a local folder")
        dataset = gr.Dropdown(list(DATASETS), value="bbc-news", allow_custom_value=True, label="Dataset",
                              info="built-in (offline), a Hub name, a local path, or upload a file below")
    with gr.Row():
        upload = gr.File(label="Upload CSV / JSONL", file_types=[".csv", ".jsonl", ".json", ".parquet"], height=110)
        text_column = gr.Dropdown([], value=None, allow_custom_value=True, label="Text column", info="detected if empty")
        label_column = gr.Dropdown([], value=None, allow_custom_value=True, label="Label column", info="detected if empty")
    with gr.Row():
        max_train = gr.Number(value=None, precision=0, label="Train subset (empty = all)")
        max_eval = gr.Number(value=None, precision=0, label="Validation/test cap (empty = all)")
        max_length = gr.Slider(16, 512, value=DEFAULTS.max_length, step=16, label="Max length (tokens)")
        seed = gr.Number(value=DEFAULTS.seed, precision=0, label="Seed")
    check = gr.Button("Check dataset health", variant="secondary")
    summary = gr.Markdown()
    warnings = gr.Markdown()
    with gr.Row():
        balance_plot = gr.Plot(label="Class balance")
        length_plot = gr.Plot(label="Token lengths")
    samples = gr.Dataframe(label="Sample rows", wrap=True, max_height=300)

    inputs = [model, dataset, text_column, label_column, max_train, max_eval, max_length, seed]
    upload.upload(on_upload, inputs=[upload], outputs=[dataset, text_column, label_column], api_name="upload")
    check.click(on_check, inputs=inputs, outputs=[summary, warnings, balance_plot, length_plot, samples],
                api_name="check_data")
    return {"inputs": inputs, "model": model, "dataset": dataset, "max_length": max_length}


def on_upload(file):
    if file is None:
        return gr.update(), gr.update(), gr.update()
    try:
        path = keep_upload(file if isinstance(file, str) else file.name)
        columns = [str(c) for c in read_local_file(Path(path)).columns]
    except LftError as exc:
        raise as_gradio_error(exc) from None
    text = next((c for c in columns if c.lower() in TEXT_CANDIDATES), None)
    label = next((c for c in columns if c.lower() in LABEL_CANDIDATES), None)
    return (gr.update(value=path), gr.update(choices=columns, value=text), gr.update(choices=columns, value=label))


def on_check(*values, progress=gr.Progress()):
    try:
        cfg = data_config(*values)
        progress(0.1, desc="loading the tokenizer")
        tokenizer = load_tokenizer(resolve_model(cfg.model))
    except LftError as exc:
        raise as_gradio_error(exc) from None
    except OSError as exc:
        raise gr.Error(f"could not load the tokenizer of '{values[0]}': {str(exc).splitlines()[0]}") from None
    progress(0.4, desc="reading and splitting the data")
    health = check_dataset(cfg, tokenizer)
    if health.error:
        raise gr.Error(health.error, duration=None)
    sizes = ", ".join(f"{split} {n:,}" for split, n in health.splits.items())
    summary = f"**Splits:** {sizes}. **Classes:** {len(health.balance)}. " \
              f"**Truncated at {health.max_length} tokens:** {health.truncated_share:.0%} of train texts."
    notes = "\n".join(f"- ⚠️ {w}" for w in health.warnings) or "No problems found."
    for warning in health.warnings:
        gr.Warning(warning)
    return (summary, notes, report.class_balance(health.balance),
            report.length_histogram(health.lengths, health.max_length), pd.DataFrame(health.samples))
