"""Tab 3, fine-tune: method and hyperparameters, Train streams the worker's events live (progress with time left,
loss, validation per epoch), Stop ends it within a step. A page sees and stops only its own jobs: the browser keeps
an owner token (gr.BrowserState), so a reload of the same browser reattaches to its job, with its settings, and
replays its curve from the run's event log, while a new visitor starts from the defaults."""

from __future__ import annotations

import time
import uuid
from functools import partial
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import pandas as pd
import yaml

import lft_core
from lft_core import LftError, events
from ui.forms import DataForm, TrainForm, build_config, error, hide_paths, learning_rate_hint, load_data, user_message
from ui.jobs import Job, JobManager

POLL_S = 0.5
EMPTY_EPOCHS = pd.DataFrame(columns=["epoch", "step", *[m.label for m in lft_core.METRICS], "best so far"])
PHASES = {"data": "loading the data", "model": "loading the model", "calibrate": "timing a few batches on this machine",
          "baseline": "scoring the base model", "train": "training", "save": "saving and reloading",
          "evaluate": "scoring the reloaded adapter", "reference": "training the TF-IDF reference",
          "report": "writing the report"}


def owner_of_page(token: str | None, request: gr.Request | None) -> str | None:
    """Who a page is: the browser's owner token, or for an API client (which keeps no browser storage) its
    session."""
    if token:
        return str(token)
    session = getattr(request, "session_hash", None)
    return f"session-{session}" if session else None


def _page(request: gr.Request | None) -> str | None:
    return getattr(request, "session_hash", None)


def empty_curves():
    """The loss chart of no run: shown under Checking, Queued and Not started, so an older run's curve does not
    stay there."""
    return lft_core.report.training_curves([], [])


def create_train_tab(data: dict, jobs: JobManager, owner: gr.BrowserState) -> dict:
    data_form: DataForm = data["form"]
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=360):
            form = TrainForm.create(more=False)
            weights_note = gr.Markdown()
            with gr.Row(elem_id="train-buttons"):
                train = gr.Button("Train", variant="primary")
                stop = gr.Button("Stop", variant="stop")
            form.more_options()
        with gr.Column(scale=3):
            status = gr.Markdown("No training yet.", elem_id="train-status")
            bar = gr.HTML(progress_html(None), elem_id="train-bar")
            loss_plot = gr.Plot(lft_core.report.training_curves([], []), label="Loss (live)", show_label=False)
            epoch_table = gr.Dataframe(EMPTY_EPOCHS, label="Validation per epoch", max_height=150,
                                       show_row_numbers=False)
    with gr.Accordion("Log", open=False):
        log = gr.Textbox(lines=12, max_lines=12, autoscroll=True, show_label=False)
    finished_run = gr.State(None)
    resumed = gr.State(None)
    prefilled = gr.State(form.prefilled)

    method_outputs = [form.learning_rate, *form.params, form.target_modules, form.options, prefilled]
    for trigger in (form.method.change, data_form.model.change):
        trigger(on_method, inputs=[data_form.model, form.method], outputs=method_outputs, api_name=False)
    data["suggestions"].change(on_suggestions, inputs=[data["suggestions"]], outputs=[form.class_weights, weights_note],
                               api_name=False)
    outputs = [status, bar, loss_plot, epoch_table, log, finished_run]
    # The stream has its own status line and progress bar; Gradio's pulsing border around outputs that are being
    # streamed to redrew the page all through training (its CPU cost: benchmarks/results/defaults.md).
    streamed = {"outputs": outputs, "concurrency_limit": None, "show_progress": "hidden"}
    settings = [*data_form.setters({}), *form.setters({})]

    # Plain functions, not functools.partial: Gradio finds the gr.Request parameter through the function's type
    # hints, which a partial does not have (it then passed the request slot as an input, None).
    def train_job(values: dict, request: gr.Request = None):
        yield from on_train(jobs, data_form, form, owner, prefilled, values, request)

    def stop_job(token=None, request: gr.Request = None):
        return on_stop(jobs, token, request)

    def follow_resumed(token=None, request: gr.Request = None):
        yield from on_resumed(jobs, token, request)

    def reattach(token=None, saved=None, request: gr.Request = None):
        yield from on_reattach(jobs, data_form, form, settings, token, saved, request)

    train.click(train_job, inputs=data_form.inputs | form.inputs | {owner, prefilled}, api_name="train", **streamed)
    stop.click(stop_job, inputs=[owner], outputs=[status], concurrency_limit=None, api_name="stop")
    resumed.change(follow_resumed, inputs=[resumed], api_name=False, **streamed)
    return {"outputs": outputs, "finished_run": finished_run, "resumed": resumed, "form": form, "settings": settings,
            "train": train, "follow": partial(follow, jobs), "reattach": reattach}


def on_method(model, method):
    """Pre-fill the method's defaults for this model's architecture. If the model cannot be read now (not yet
    converted, offline, a typo), the target modules are cleared rather than left as the previous model's: empty
    means Train derives them from the model it loads, and the page says so in one line."""
    spec = lft_core.get_method(method)
    try:
        params = lft_core.default_params(model, method)
    except Exception as exc:  # any failure here (a conversion's I/O error too) must leave the form consistent
        params = dict(spec.defaults)
        if spec.is_peft:
            gr.Warning(f"Target modules for {model} will be chosen when training starts ({_one_line(exc)}).")
    targets = params.pop("target_modules", None)
    rest = {k: v for k, v in params.items() if k not in spec.tunable}
    sliders = [gr.update(**update) for update in TrainForm.param_updates(method, params)]
    shown = ", ".join(targets) if isinstance(targets, list) else (targets or "")
    return (gr.update(placeholder=learning_rate_hint(spec), value=""), *sliders,
            gr.update(value=shown, interactive=spec.is_peft),
            yaml.safe_dump(rest, default_flow_style=True).strip().strip("{}") if rest else "", shown)


def _one_line(exc: BaseException) -> str:
    """An exception's first sentence, whole: never a message cut mid-sentence."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    first = text.split(". ")[0].rstrip(".")
    return hide_paths(first if len(first) <= 200 else type(exc).__name__)


def on_suggestions(suggestions: dict):
    if suggestions.get("class_weights"):
        return True, "Class weights are on: the health check found the classes imbalanced."
    return gr.update(), ""


def on_train(jobs: JobManager, data_form: DataForm, form: TrainForm, owner: gr.BrowserState, prefilled: gr.State,
             values: dict, request: gr.Request = None):
    """Check everything that needs no model, here and at once, then queue the job (owned by this page) and stream
    it. The status line and chart change at the click, so the previous job's last word is not read as this one's."""
    page = _page(request)
    jobs.follow_here(page, "")  # this page's earlier stream (a reattach, a resume) ends: one stream per page
    yield "**Checking** the settings…", progress_html(None), empty_curves(), EMPTY_EPOCHS, "", None
    try:
        values = form.rederive_targets(values, values.get(prefilled))
        cfg = build_config(data_form, values, form)
        cfg, notes = lft_core.apply_host_limits(cfg)
        lft_core.check_run(cfg, output=False)
        load_data(cfg)
        job = jobs.submit(cfg, owner=owner_of_page(values.get(owner), request))
    except LftError as exc:
        yield f"**Not started**: {user_message(exc)}", progress_html(None), empty_curves(), EMPTY_EPOCHS, "", None
        raise error(exc) from None
    for note in notes:
        gr.Warning(note)
    yield from follow(jobs, job.name, page)


def on_stop(jobs: JobManager, token: str | None = None, request: gr.Request = None) -> str:
    """Stop this page's own job: its running one, or cancel its queued one; never another page's."""
    owner = owner_of_page(token, request)
    job = jobs.active(owner)
    if job is None:
        others = jobs.current()
        return "Nothing of yours is training or queued." + (
            f" `{others.name}` was started from another page (see **All runs**)." if others else "")
    message = jobs.stop(job, owner=owner)
    status = lft_core.read_status(Path(job.run_dir)) if Path(job.run_dir).exists() else {}
    if status.get("status") == "stopped" and not message.startswith("Removed"):
        return f"**Stopped** `{job.name}`. {_resume_hint(job)}"
    return message


def _resume_hint(job: Job) -> str:
    info = next((r for r in lft_core.list_runs(Path(job.run_dir).parent) if r.path == job.run_dir), None)
    if info is not None and info.resumable:
        return "A checkpoint was kept: resume it from **All runs** in the Compare tab."
    return "Nothing was saved as a finished adapter."


def on_resumed(jobs: JobManager, token: str | None, request: gr.Request = None):
    """A resume queued from the Compare tab's run list: stream it here. token is 'name@time', so resuming the
    same run twice still changes it."""
    if token:
        yield from follow(jobs, token.rsplit("@", 1)[0], _page(request))


def on_reattach(jobs: JobManager, data_form: DataForm, form: TrainForm, settings: list, token: str | None = None,
                saved: dict | None = None, request: gr.Request = None):
    """On page load: give a new browser its owner token; show this browser's own running or queued job with its
    settings, or its last job's final state; else the form as this browser last used it (a reload mid-Baseline
    keeps the seed), else the defaults. Another visitor's job is never shown here."""
    token = token or uuid.uuid4().hex
    job = jobs.active(token)
    shown = job or jobs.latest(token)
    config = job.config if job else (saved or {})
    setters = {**data_form.setters(config), **form.setters(config)} if config else {}
    restore = [setters.get(widget, gr.update()) for widget in settings]
    if shown is None:
        yield ("No training yet.", progress_html(None), gr.update(), gr.update(), gr.update(), None, *restore, token)
        return
    for update in follow(jobs, shown.name, _page(request)):
        yield (*update, *restore, token)
        restore = [gr.update()] * len(settings)


# ---------------------------------------------------------------- the live view


@dataclass
class _View:
    """What the page shows of a job, built from its events. A Resumed event reopens a view that its run's earlier
    Stopped had closed: the curve keeps the steps up to the checkpoint and the new attempt continues from there."""

    name: str
    losses: list = field(default_factory=list)
    epochs: list[events.EpochRecord] = field(default_factory=list)
    best_epochs: dict[int, int] = field(default_factory=dict)
    """epoch -> the best epoch so far when it ended, for the table"""
    lines: list = field(default_factory=list)
    progress: events.Progress | None = None
    phase: str = "starting"
    state: str = ""
    finished: str | None = None
    done: bool = False
    total_steps: int | None = None
    changed: bool = True
    share: float = 0.0
    """the whole run's share done, as the bar shows it: it never goes back within an attempt"""
    share_from: float = 0.0
    """the share reached at the checkpoint a resumed attempt started from (0 for a first attempt)"""
    train_shares: list = field(default_factory=list)
    """(step, share) of the training progress seen, to find the share at a checkpoint's step"""
    estimated_s: float | None = None
    """the whole run's time as the engine estimated it on this machine (events.Estimated)"""

    def apply(self, event: events.Event) -> None:
        if isinstance(event, events.Progress):
            self.progress = event
            if event.run_share is not None:
                self.share = max(self.share, self.share_from + (1 - self.share_from) * event.run_share)
            elif event.phase == "train" and event.total:  # a log from before run_share: training's own share
                self.share = max(self.share, event.step / event.total)
            if event.phase == "train":
                self.train_shares.append((event.step, self.share))
                if event.loss is not None:
                    if self.losses and event.step <= self.losses[-1][0]:  # a resumed attempt redoes these steps
                        self.losses = [point for point in self.losses if point[0] < event.step]
                    self.losses.append((event.step, event.loss))
                    self.total_steps, self.changed = event.total, True
            return
        self.lines.append(events.describe(event))
        if self.done and isinstance(event, (events.Started, events.Stage)) and not self.finished:
            self.done, self.state = False, ""  # a run resumed without a Resumed event (the CLI's --resume) goes on
        if isinstance(event, events.Resumed):
            step = event.from_step or 0
            self.done, self.state, self.finished, self.progress, self.phase = False, "", None, None, "starting"
            self.losses = [point for point in self.losses if point[0] <= step]
            self.epochs = [e for e in self.epochs if e.step <= step]
            self.share_from = max((share for s, share in self.train_shares if s <= step), default=0.0)
            self.share, self.changed = self.share_from, True
        elif isinstance(event, events.Estimated):
            self.estimated_s = event.seconds
        elif isinstance(event, events.Stage):
            self.phase = event.stage
            if event.stage != "train":
                self.progress = None
        elif isinstance(event, events.EpochEnd):
            self.epochs.append(event.record)
            self.best_epochs[event.epoch] = event.best_epoch
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
        estimate = f" (about {events.duration(self.estimated_s)} in all, as estimated here)" if self.estimated_s else ""
        return f"**Running** `{self.name}`: {PHASES.get(self.phase, self.phase)}…{estimate}"

    def render(self):
        figure = gr.update()
        if self.changed:
            figure = lft_core.report.training_curves(self.losses, self.epochs, self.total_steps)
            self.changed = False
        table = epoch_table(self.epochs, self.best_epochs) if self.epochs else EMPTY_EPOCHS
        ending = "done" if self.finished else self.state.split("**")[1].lower() if self.done else None
        bar = progress_html(None if self.done else self.progress, self.phase, ending=ending,
                            share=None if self.done else self.share)
        return self.status(), bar, figure, table, "\n".join(self.lines[-300:]), self.finished


def epoch_table(epochs: list[events.EpochRecord], best_epochs: dict[int, int]) -> pd.DataFrame:
    """A row per epoch: its validation scores under their METRICS labels (a score the run did not measure stays
    empty) and the best epoch so far."""
    return pd.DataFrame([{"epoch": e.epoch, "step": e.step,
                          **{m.label: None if e.scores.get(m.key) is None else round(e.scores[m.key], 4)
                             for m in lft_core.METRICS},
                          "best so far": best_epochs.get(e.epoch)} for e in epochs])


def follow(jobs: JobManager, name: str, page: str | None = None):
    """Replay the job's events from the start, then stream new ones until it ends, or until this page follows
    another job (then this stream ends without a word, leaving the outputs to the new one)."""
    jobs.follow_here(page, name)
    view, offset = _View(name), 0
    while True:
        if not jobs.still_followed(page, name):
            return
        job = jobs.get(name)
        if job is None:
            yield (f"**Removed** `{name}` from the queue.", progress_html(None, ending="cancelled"), empty_curves(),
                   EMPTY_EPOCHS, gr.update(), None)
            return
        if job.state == "queued":
            running = jobs.current()
            behind = f"behind `{running.name}`" if running else "to start"
            waiting = [j.name for j in jobs.queued()]
            ahead = waiting.index(name) if name in waiting else 0
            wait = f" and {ahead} more" if ahead else ""
            yield (f"**Queued** `{name}`: waiting {behind}{wait}; it starts when that finishes (you can close this page).",
                   progress_html(None, "queued"), empty_curves(), EMPTY_EPOCHS, "", None)
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


def progress_html(progress: events.Progress | None, phase: str = "", ending: str | None = None,
                  share: float | None = None) -> str:
    """One progress bar from click to finish: its width is `share`, the whole run's share done (events.Progress'
    run_share, from the run's calibrated estimate), so it does not restart from empty at each phase; the text says the
    phase's own steps, elapsed and remaining time (training, validation, saving and the final evaluation included).
    `ending` ('done', 'stopped', 'failed') closes it."""
    if ending:
        width, text = (1.0 if ending == "done" else share or 0.0), ending
    elif progress is None:
        width = share or 0.0
        text = ("waiting in the queue" if phase == "queued" else PHASES.get(phase, "waiting") + "…") if phase else "idle"
    else:
        phase_share = progress.step / max(progress.total, 1)
        width = share if share is not None else progress.run_share if progress.run_share is not None else phase_share
        what = "step" if progress.phase == "train" else "text"
        text = (f"{PHASES.get(progress.phase, progress.phase)}: {what} {progress.step:,} of {progress.total:,} "
                f"({phase_share:.0%})")
        if progress.epoch is not None:
            text += f", epoch {progress.epoch:.2f}"
        if share is not None or progress.run_share is not None:
            text += f" · {width:.0%} of the run"
        text += f" · {lft_core.events.duration(progress.elapsed_s)} elapsed"
        if progress.eta_s is not None:
            text += f" · about {lft_core.events.duration(progress.eta_s)} left" + (" (with evaluation and saving)"
                                                                    if progress.phase == "train" else "")
        elif progress.phase == "train":
            text += " · estimating the time left"
    return (f'<div class="lft-progress"><div class="lft-progress-bar" style="width:{100 * width:.1f}%"></div></div>'
            f'<div class="lft-progress-text">{text}</div>')
