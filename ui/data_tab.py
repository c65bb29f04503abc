"""Tab 1, model and data: pick or type a model and a dataset, or upload a file, then check the data's health."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

import gradio as gr
import pandas as pd

import lft_core
from lft_core import LftError
from ui.forms import DataForm, build_config, error

EMPTY_SAMPLES = pd.DataFrame(columns=["label", "text"])


def create_data_tab() -> dict:
    form = DataForm.create()
    upload_note = gr.Markdown()
    summary = gr.Markdown()
    warnings = gr.Markdown()
    with gr.Row():
        balance_plot = gr.Plot(label="Class balance")
        length_plot = gr.Plot(label="Token lengths")
    samples = gr.Dataframe(EMPTY_SAMPLES, label="Sample rows (two per class)", wrap=True, max_height=300,
                           column_widths=["18%", "82%"], show_row_numbers=False)
    suggestions = gr.State({})
    recommended = gr.State({})

    form.upload.upload(on_upload, inputs=[form.upload, form.dataset],
                       outputs=[form.upload, form.dataset, form.text_column, form.label_column, upload_note],
                       api_name="upload")
    health_views = [summary, warnings, balance_plot, length_plot, samples, suggestions]
    # a check that fails, or another dataset picked, must not leave the last dataset's health on screen under it
    form.dataset.change(cleared_health, outputs=health_views, api_name=False, show_progress="minimal")
    # the recommended length reaches the form only once the check succeeded: a failed check's error marks its
    # outputs, and the form's own fields must not be marked for data they did not cause
    form.check.click(cleared_health, outputs=health_views, api_name=False, show_progress="minimal").then(
        lambda values, progress=gr.Progress(): on_check(form, values, progress), inputs=form.inputs,
        outputs=[*health_views, recommended], api_name="check_data").success(
        apply_recommended, inputs=[recommended], outputs=[form.max_length, form.truncation], api_name=False,
        show_progress="minimal")
    return {"form": form, "suggestions": suggestions}


def apply_recommended(recommended: dict):
    if not recommended:
        return gr.update(), gr.update()
    return recommended["max_length"], recommended["truncation"]


def cleared_health():
    return "", "", None, None, EMPTY_SAMPLES, {}


def keep_upload(path: str) -> tuple[str, list[str]]:
    """Check an upload (size, rows, readable, has data) where Gradio put it, and only then copy it out of Gradio's
    temp folder, so the worker can read it and it survives a restart. Returns the kept path and its columns."""
    limits = lft_core.host_limits()
    source = Path(path)
    size_mb = source.stat().st_size / 2**20
    if size_mb > limits.max_upload_mb:
        raise LftError(f"the file is {size_mb:.1f} MB; uploads are limited to {limits.max_upload_mb:.0f} MB")
    if source.suffix.lower() in (".csv", ".jsonl", ".tsv"):
        with source.open("rb") as f:
            rows = sum(1 for _ in f)
        if rows - 1 > limits.max_upload_rows:
            raise LftError(f"the file has {rows - 1:,} rows; uploads are limited to {limits.max_upload_rows:,} rows "
                           f"(subsample it, or run the CLI on your own machine)")
    columns = lft_core.read_columns(source)
    target_dir = lft_core.adapters_root() / ".uploads"
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / source.name
    with tempfile.NamedTemporaryFile(dir=target_dir, delete=False) as tmp:
        shutil.copyfile(source, tmp.name)
    Path(tmp.name).replace(target)
    return str(target), columns


def on_upload(file, dataset):
    """Keep a good upload and select it; a rejected one clears itself and says what stays selected."""
    if file is None:
        return gr.update(), gr.update(), gr.update(), gr.update(), ""
    name = Path(file if isinstance(file, str) else file.name).name
    try:
        path, columns = keep_upload(file if isinstance(file, str) else file.name)
    except LftError as exc:
        stays = Path(str(dataset)).name if dataset else "nothing"
        message = f"{name} was not used: {exc}. The dataset stays {stays}."
        gr.Warning(message)
        return None, gr.update(), gr.update(), gr.update(), f"**Upload rejected.** {message}"
    text, label = lft_core.guess_columns(columns)
    choices = [(n, n) for n in lft_core.DATASETS] + [(f"uploaded: {name}", path)]
    return (gr.update(), gr.update(choices=choices, value=path),
            gr.update(choices=columns, value=text), gr.update(choices=columns, value=label),
            f"Using the uploaded file **{name}** ({len(columns)} columns: {', '.join(columns[:8])}).")


def run_time(cfg) -> str:
    """The whole run's estimate, measured here now; a model that cannot be timed is no reason to fail the check."""
    try:
        estimate = lft_core.estimate_run_time(cfg)
    except LftError as exc:
        return f"**Time:** not estimated ({exc})."
    return f"**Time:** {estimate.describe()}"


def on_check(form: DataForm, values: dict, progress):
    try:
        cfg = build_config(form, values)
        progress(0.1, desc="loading the tokenizer")
        tokenizer = lft_core.tokenizer_for(cfg.model, cfg.trust_remote_code)
        progress(0.4, desc="reading and splitting the data")
        health = lft_core.check_dataset(cfg, tokenizer)
    except LftError as exc:
        raise error(exc) from None
    sizes = ", ".join(f"{split} {n:,}" for split, n in health.splits.items())
    summary = (f"**Splits:** {sizes}. **Classes:** {len(health.balance)}. **Truncated at {health.max_length} tokens:** "
               f"{health.truncated_share:.0%} of train texts.")
    recommended, chosen = health.recommended, {}
    if recommended:
        length, truncation = recommended["max_length"], recommended["truncation"]
        chosen = {"max_length": length, "truncation": truncation}
        summary += f"  \n**Max length set to {length}** ({recommended['why']}), in batches of {recommended['batch_size']}."
        progress(0.6, desc="timing a few training steps on this machine")
        summary += "  \n" + run_time(dataclasses.replace(cfg, max_length=length, truncation=truncation))
    notes = "\n".join(f"- ⚠ {w}" for w in health.warnings) or "No problems found."
    suggestions = {"class_weights": True} if health.imbalanced else {}
    return (summary, notes, lft_core.report.class_balance(health.balance),
            lft_core.report.length_histogram(health.lengths, health.max_length), health.samples, suggestions,
            chosen)
