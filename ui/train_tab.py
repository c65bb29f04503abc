"""Tab 3, fine-tune: method and hyperparameters, Train streams the worker's events live (progress with time left,
loss, validation per epoch), Stop ends it within a step. Reopening the page reattaches to a running or queued job,
with its settings, and replays its curve from the run's event log."""

from __future__ import annotations

import time
from functools import partial
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import pandas as pd
import yaml

import lft_core
from lft_core import LftError, events
from ui.forms import DataForm, TrainForm, build_config, error, hide_paths, learning_rate_hint, load_data
from ui.jobs import Job, JobManager

POLL_S = 0.5
EMPTY_EPOCHS = pd.DataFrame(columns=["epoch", "step", "accuracy", "macro-F1", "best so far"])
PHASES = {"data": "loading the data", "model": "loading the model", "baseline": "scoring the base model",
          "train": "training", "save": "saving and reloading", "evaluate": "scoring the reloaded adapter",
          "reference": "training the TF-IDF reference", "report": "writing the report"}


def create_train_tab(data: dict, jobs: JobManager) -> dict:
    data_form: DataForm = data["form"]
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=360):
            form = TrainForm.create()
            weights_note = gr.Markdown()
            with gr.Row():
                train = gr.Button("Train", variant="primary")
                stop = gr.Button("Stop", variant="stop")
        with gr.Column(scale=3):
            status = gr.Markdown("No training yet.")
            bar = gr.HTML(progress_html(None))
            loss_plot = gr.Plot(lft_core.report.training_curves([], []), label="Loss (live)", show_label=False)
            epoch_table = gr.Dataframe(EMPTY_EPOCHS, label="Validation per epoch", max_height=150,
                                       show_row_numbers=False)
    with gr.Accordion("Log", open=False):
        log = gr.Textbox(lines=12, max_lines=12, autoscroll=True, show_label=False)
    finished_run = gr.State(None)
    resumed = gr.State(None)

    method_outputs = [form.learning_rate, *form.params, form.target_modules, form.options]
    for trigger in (form.method.change, data_form.model.change):
        trigger(on_method, inputs=[data_form.model, form.method], outputs=method_outputs, api_name=False)
    data["suggestions"].change(on_suggestions, inputs=[data["suggestions"]], outputs=[form.class_weights, weights_note],
                               api_name=False)
    outputs = [status, bar, loss_plot, epoch_table, log, finished_run]
    # The stream has its own status line and progress bar; Gradio's pulsing border around outputs that are being
    # streamed to redrew the page all through training (its CPU cost: benchmarks/results/defaults.md).
    streamed = {"outputs": outputs, "concurrency_limit": None, "show_progress": "hidden"}
    train.click(partial(on_train, jobs, data_form, form), inputs=data_form.inputs | form.inputs, api_name="train",
                **streamed)
    stop.click(lambda: on_stop(jobs), outputs=[status], concurrency_limit=None, api_name="stop")
    resumed.change(partial(on_resumed, jobs), inputs=[resumed], api_name=False, **streamed)
    settings = [*data_form.setters({}), *form.setters({})]
    return {"outputs": outputs, "finished_run": finished_run, "resumed": resumed, "form": form, "settings": settings,
            "follow": partial(follow, jobs), "reattach": partial(on_reattach, jobs, data_form, form, settings)}


def on_method(model, method):
    """Pre-fill the method's defaults for this model's architecture."""
    spec = lft_core.get_method(method)
    try:
        params = lft_core.default_params(model, method)
    except (LftError, OSError, ValueError):
        params = dict(spec.defaults)
    targets = params.pop("target_modules", None)
    rest = {k: v for k, v in params.items() if k not in spec.tunable}
    sliders = [gr.update(**update) for update in TrainForm.param_updates(method, params)]
    return (gr.update(placeholder=learning_rate_hint(spec), value=""), *sliders,
            gr.update(value=", ".join(targets) if isinstance(targets, list) else (targets or ""),
                      interactive=targets is not None),
            yaml.safe_dump(rest, default_flow_style=True).strip().strip("{}") if rest else "")


def on_suggestions(suggestions: dict):
    if suggestions.get("class_weights"):
        return True, "Class weights are on: the health check found the classes imbalanced."
    return gr.update(), ""


def on_train(jobs: JobManager, data_form: DataForm, form: TrainForm, values: dict):
    """Check everything that needs no model, here and at once, then queue the job and stream it. The status line
    changes at the click, so the previous job's last word is not read as this one's."""
    yield "**Checking** the settings…", progress_html(None), gr.update(), EMPTY_EPOCHS, "", None
    try:
        cfg = build_config(data_form, values, form)
        cfg, notes = lft_core.apply_host_limits(cfg)
        lft_core.check_run(cfg, output=False)
        load_data(cfg)
        job = jobs.submit(cfg)
    except LftError as exc:
        yield f"**Not started**: {hide_paths(str(exc))}", progress_html(None), gr.update(), EMPTY_EPOCHS, "", None
        raise error(exc) from None
    for note in notes:
        gr.Warning(note)
    yield from follow(jobs, job.name)


def on_stop(jobs: JobManager) -> str:
    job = jobs.current() or next(iter(jobs.queued()), None)
    if job is None:
        return "Nothing is training."
    message = jobs.stop(job)
    status = lft_core.read_status(Path(job.run_dir)) if Path(job.run_dir).exists() else {}
    if status.get("status") == "stopped":
        return f"**Stopped** `{job.name}`. {_resume_hint(job)}"
    return message


def _resume_hint(job: Job) -> str:
    info = next((r for r in lft_core.list_runs(Path(job.run_dir).parent) if r.path == job.run_dir), None)
    if info is not None and info.resumable:
        return "A checkpoint was kept: resume it from **All runs** in the Compare tab."
    return "Nothing was saved as a finished adapter."


def on_resumed(jobs: JobManager, token: str | None):
    """A resume queued from the Compare tab's run list: stream it here. token is 'name@time', so resuming the
    same run twice still changes it."""
    if token:
        yield from follow(jobs, token.rsplit("@", 1)[0])


def on_reattach(jobs: JobManager, data_form: DataForm, form: TrainForm, settings: list):
    """On page load: show the running or queued job with its settings, or the last job's final state."""
    job = jobs.current() or next(iter(jobs.queued()), None)
    shown = job or jobs.latest()
    if shown is None:
        yield ("No training yet.", progress_html(None), gr.update(), gr.update(), gr.update(), None,
               *[gr.update()] * len(settings))
        return
    setters = {**data_form.setters(job.config), **form.setters(job.config)} if job else {}
    first = True
    for update in follow(jobs, shown.name):
        restore = [setters.get(widget, gr.update()) for widget in settings] if first else [gr.update()] * len(settings)
        first = False
        yield (*update, *restore)


# ---------------------------------------------------------------- the live view


@dataclass
class _View:
    """What the page shows of a job, built from its events."""

    name: str
    losses: list = field(default_factory=list)
    epochs: list = field(default_factory=list)
    lines: list = field(default_factory=list)
    progress: events.Progress | None = None
    phase: str = "starting"
    state: str = ""
    finished: str | None = None
    done: bool = False
    total_steps: int | None = None
    changed: bool = True

    def apply(self, event: events.Event) -> None:
        if isinstance(event, events.Progress):
            self.progress = event
            if event.phase == "train" and event.loss is not None:
                self.losses.append((event.step, event.loss))
                self.total_steps, self.changed = event.total, True
            return
        self.lines.append(events.describe(event))
        if isinstance(event, events.Stage):
            self.phase = event.stage
            if event.stage != "train":
                self.progress = None
        elif isinstance(event, events.EpochEnd):
            best = event.best_epoch
            self.epochs.append({"epoch": event.epoch, "step": event.step,
                                **{m.label: round(event.scores[m.key], 4) for m in lft_core.METRICS},
                                "best so far": best})
            self.changed = True
        elif isinstance(event, events.Finished):
            self.finished, self.done = event.run_dir, True
            self.state = f"**Finished** `{self.name}`: **{event.verdict}** See the Compare tab."
        elif isinstance(event, events.Failed):
            self.done, self.state = True, f"**Failed** `{self.name}`: {event.message}"
        elif isinstance(event, events.Stopped):
            self.done = True
            hint = "A checkpoint was kept: resume it from **All runs** in the Compare tab." if event.resumable else \
                "Nothing was saved as a finished adapter."
            self.state = f"**Stopped** `{self.name}`. {hint}"

    def status(self) -> str:
        if self.done:
            return self.state
        return f"**Running** `{self.name}`: {PHASES.get(self.phase, self.phase)}…"

    def render(self):
        figure = gr.update()
        if self.changed:
            figure = lft_core.report.training_curves(self.losses, [
                {"epoch": e["epoch"], "step": e["step"], "scores": {"accuracy": e["accuracy"]}} for e in self.epochs],
                self.total_steps)
            self.changed = False
        table = pd.DataFrame(self.epochs) if self.epochs else EMPTY_EPOCHS
        ending = "done" if self.finished else self.state.split("**")[1].lower() if self.done else None
        bar = progress_html(None if self.done else self.progress, self.phase, ending=ending)
        return self.status(), bar, figure, table, "\n".join(self.lines[-300:]), self.finished


def follow(jobs: JobManager, name: str):
    """Replay the job's events from the start, then stream new ones until it ends."""
    view, offset = _View(name), 0
    while True:
        job = jobs.get(name)
        if job is None:
            yield f"`{name}` was removed from the queue.", progress_html(None), gr.update(), gr.update(), gr.update(), None
            return
        if job.state == "queued":
            running = jobs.current()
            behind = f"behind `{running.name}`" if running else "to start"
            ahead = [j.name for j in jobs.queued()].index(name) if name in [j.name for j in jobs.queued()] else 0
            wait = f" and {ahead} more" if ahead else ""
            yield (f"**Queued** `{name}`: waiting {behind}{wait}; it starts when that finishes (you can close this page).",
                   progress_html(None), gr.update(), EMPTY_EPOCHS, "", None)
            time.sleep(POLL_S * 2)
            continue
        alive = jobs.alive(job)
        new, offset = events.tail(job.events_path, offset)
        for event in new:
            view.apply(event)
        if view.done or (not alive and not new):
            if not view.done:
                view.state, view.done = _ended_without_word(job), True
            yield view.render()
            return
        yield view.render()
        time.sleep(POLL_S)


def _ended_without_word(job: Job) -> str:
    """The worker exited without a final event: say what its log or its folder says."""
    log = Path(job.log) if job.log else None
    text = log.read_text(errors="replace") if log is not None and log.exists() else ""
    error_line = next((line for line in reversed(text.splitlines()) if line.startswith("error:")), None)
    if error_line:
        return f"**Failed** `{job.name}`: {error_line[len('error:'):].strip()}"
    status = lft_core.read_status(Path(job.run_dir)).get("status", "unknown")
    return f"**Ended** `{job.name}` ({status}) without finishing."


def progress_html(progress: events.Progress | None, phase: str = "", ending: str | None = None) -> str:
    """A progress bar with steps, percent, elapsed and remaining time (training, validation, saving and the final
    evaluation included); `ending` ('done', 'stopped', 'failed') closes it."""
    if ending:
        share, text = (1.0 if ending == "done" else 0.0), ending
    elif progress is None:
        share, text = 0.0, PHASES.get(phase, "waiting") + "…" if phase else "idle"
    else:
        share = progress.step / max(progress.total, 1)
        what = "step" if progress.phase == "train" else "text"
        text = f"{PHASES.get(progress.phase, progress.phase)}: {what} {progress.step:,} of {progress.total:,} ({share:.0%})"
        if progress.epoch is not None:
            text += f", epoch {progress.epoch:.2f}"
        text += f" · {lft_core.events.duration(progress.elapsed_s)} elapsed"
        if progress.eta_s is not None:
            text += f" · about {lft_core.events.duration(progress.eta_s)} left" + (" (with evaluation and saving)"
                                                                    if progress.phase == "train" else "")
        elif progress.phase == "train":
            text += " · estimating the time left"
    return (f'<div class="lft-progress"><div class="lft-progress-bar" style="width:{100 * share:.1f}%"></div></div>'
            f'<div class="lft-progress-text">{text}</div>')
