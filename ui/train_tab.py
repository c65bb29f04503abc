"""Tab 3, fine-tune: method and hyperparameters, Train streams the worker's events live, Stop ends it cleanly.
Reopening the page reattaches to a running job and replays its loss curve from the job's event file."""

from __future__ import annotations

import time
from functools import partial

import gradio as gr
import pandas as pd
import yaml

from lft_core import METHODS, LftError, RunConfig, report
from lft_core.methods import default_params, get_method
from ui.jobs import Busy, Job, JobManager
from ui.state import apply_limits, as_gradio_error, data_config

POLL_S = 1.0
DEFAULTS = RunConfig()


def create_train_tab(data: dict, jobs: JobManager) -> dict:
    with gr.Row():
        method = gr.Dropdown(list(METHODS), value="lora", label="Method", scale=2)
        learning_rate = gr.Number(value=METHODS["lora"].learning_rate, label="Learning rate")
        epochs = gr.Slider(1, 10, value=DEFAULTS.epochs, step=1, label="Epochs")
        batch_size = gr.Slider(4, 64, value=DEFAULTS.batch_size, step=4, label="Batch size")
    with gr.Row():
        lora = METHODS["lora"].defaults
        r = gr.Slider(1, 64, value=lora["r"], step=1, label="LoRA r")
        alpha = gr.Slider(1, 128, value=lora["lora_alpha"], step=1, label="LoRA alpha")
        dropout = gr.Slider(0.0, 0.5, value=lora["lora_dropout"], step=0.01, label="LoRA dropout")
        targets = gr.Textbox(value="query, value", label="Target modules", info="pre-filled for the architecture")
    options = gr.Textbox(value="", label="Other method options (YAML)", lines=2,
                         info="e.g. num_virtual_tokens: 20 for prompt tuning; overrides the fields above")
    with gr.Row():
        train = gr.Button("Train", variant="primary")
        stop = gr.Button("Stop", variant="stop")
    progress = gr.Markdown("No training yet.")
    with gr.Row():
        loss_plot = gr.Plot(label="Loss (live)")
        epoch_table = gr.Dataframe(label="Validation per epoch", max_height=240)
    log = gr.Textbox(label="Log", lines=10, max_lines=10, autoscroll=True)
    finished_run = gr.State(None)

    hyper = [method, learning_rate, epochs, batch_size, r, alpha, dropout, targets, options]
    method.change(on_method, inputs=[data["model"], method], outputs=[learning_rate, r, alpha, dropout, targets, options])
    data["model"].change(on_method, inputs=[data["model"], method], outputs=[learning_rate, r, alpha, dropout, targets, options])
    outputs = [progress, loss_plot, epoch_table, log, finished_run]
    train.click(partial(on_train, jobs), inputs=data["inputs"] + hyper, outputs=outputs,
                concurrency_limit=1, concurrency_id="train", api_name="train")
    stop.click(partial(on_stop, jobs), outputs=[progress], concurrency_limit=None, api_name="stop")
    return {"outputs": outputs, "finished_run": finished_run, "reattach": partial(on_reattach, jobs)}


def on_method(model, method):
    """Pre-fill the method's defaults for this model's architecture."""
    spec = get_method(method)
    try:
        params = default_params(model, method)
    except (LftError, OSError, ValueError):
        params = dict(spec.defaults)
    targets = params.pop("target_modules", None)
    lora_like = {"r", "lora_alpha"} <= set(params)
    rest = {k: v for k, v in params.items() if k not in ("r", "lora_alpha", "lora_dropout")}
    return (spec.learning_rate,
            gr.update(value=params.get("r", 8), interactive=lora_like),
            gr.update(value=params.get("lora_alpha", 16), interactive=lora_like),
            gr.update(value=params.get("lora_dropout", 0.0), interactive=lora_like),
            gr.update(value=", ".join(targets) if isinstance(targets, list) else (targets or ""),
                      interactive=targets is not None),
            yaml.safe_dump(rest).strip() if rest else "")


def _method_params(method, r, alpha, dropout, targets, options) -> dict:
    params = {}
    if {"r", "lora_alpha"} <= set(get_method(method).defaults):
        params.update(r=int(r), lora_alpha=int(alpha), lora_dropout=float(dropout))
    if targets and targets.strip():
        params["target_modules"] = [t.strip() for t in targets.split(",") if t.strip()]
    if options and options.strip():
        try:
            extra = yaml.safe_load(options)
        except yaml.YAMLError as exc:
            raise LftError(f"method options are not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(extra, dict):
            raise LftError("method options must be 'key: value' lines")
        params.update(extra)
    return params


def baseline_path(cfg, folder):
    from lft_core.engine import baseline_path as path  # heavy module: imported when first needed

    return path(cfg, folder)


def on_train(jobs: JobManager, *values):
    data_values, (method, learning_rate, epochs, batch_size, r, alpha, dropout, targets, options) = values[:8], values[8:]
    try:
        cfg = data_config(*data_values)
        cfg.method, cfg.learning_rate, cfg.epochs, cfg.batch_size = method, float(learning_rate), float(epochs), int(batch_size)
        cfg.method_params = _method_params(method, r, alpha, dropout, targets, options)
        cfg, notes = apply_limits(cfg)
    except LftError as exc:
        raise as_gradio_error(exc) from None
    for note in notes:
        gr.Warning(note)
    while True:  # queued behind a job started from another page (or before a reload): wait for it
        try:
            job = jobs.start(cfg, base_eval=baseline_path(cfg, jobs.root / ".baselines"))
            break
        except Busy:
            running = jobs.current()
            yield (f"⏳ Queued: waiting for the running job `{running.name if running else '?'}` to finish.",
                   gr.update(), gr.update(), gr.update(), None)
            time.sleep(2)
    yield from follow(job)


def on_stop(jobs: JobManager) -> str:
    job = jobs.current()
    if job is None:
        return "Nothing is training."
    jobs.stop(job)
    return f"⏹ Stopped `{job.name}`. Nothing was saved as a finished adapter."


def on_reattach(jobs: JobManager):
    """On page load: stream the running job, or show the last job's final state."""
    job = jobs.current() or jobs.latest()
    if job is None:
        yield "No training yet.", gr.update(), gr.update(), gr.update(), None
        return
    yield from follow(job)


def follow(job: Job):
    """Replay the job's events from the start, then stream new ones until the worker exits."""
    losses, epochs, lines, offset, state, total = [], [], [], 0, "starting", 0
    finished = None
    while True:
        alive = job.alive()
        new, offset = job.read(offset)
        for event in new:
            kind = event["event"]
            if kind == "progress":
                losses.append((event["step"], event["loss"]))
                total = event["total"]
                state = (f"🏃 `{job.name}`: step {event['step']}/{event['total']} (epoch {event['epoch']:.2f}), "
                         f"loss {event['loss']:.4f}, {event['tokens_per_s']:.0f} tokens/s, ETA {event['eta_s']:.0f} s")
            elif kind == "epoch":
                epochs.append(event)
                lines.append(f"epoch {event['epoch']}: validation accuracy {event['accuracy']:.4f}, "
                             f"macro-F1 {event['macro_f1']:.4f}")
            elif kind == "stage":
                lines.append(f"[{event['stage']}] {event['message']}")
                state = f"🏃 `{job.name}`: {event['message']}"
            elif kind == "metrics":
                lines.append(f"{event['which']}: accuracy {event['accuracy']:.4f}, macro-F1 {event['macro_f1']:.4f}")
            elif kind == "warning":
                lines.append(f"warning: {event['message']}")
            elif kind == "finished":
                finished = event["run_dir"]
                state = f"✅ `{job.name}` finished. {event['verdict']} See the Compare tab."
                lines.append(event["verdict"])
            elif kind == "failed":
                state = f"❌ `{job.name}` failed: {event['message']}"
                lines.append(f"error: {event['message']}")
            elif kind == "stopped":
                state = f"⏹ `{job.name}` stopped. Nothing was saved as a finished adapter."
        table = pd.DataFrame([{k: e[k] for k in ("epoch", "step", "accuracy", "macro_f1")} for e in epochs]) if epochs else None
        if not alive and not new:
            if state.startswith("🏃") or state == "starting":
                state = f"⏹ `{job.name}` ended without finishing (stopped or interrupted)."
            yield state, report.training_curves(losses, epochs), table, "\n".join(lines[-200:]), finished
            return
        yield state, report.training_curves(losses, epochs), table, "\n".join(lines[-200:]), finished
        time.sleep(POLL_S)
