"""One app, several visitors: each page sees, follows and stops only its own jobs; a resumed run streams from its
new events on; the bar runs from click to finish. The job queue with stand-in workers (no training), the live view
fed with events, a resume with real workers, and two pages on one app in a real browser (Playwright + Debian's
Chromium), whose screenshots at 1280x720 and 390x844 are kept under docs/.

Every wait polls with a deadline; nothing sleeps and then asserts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_app import start_app, wait_for

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
DOCS = REPO / "docs"
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]


# ---------------------------------------------------------------- the queue, with stand-in workers


class StandInJobs:
    """A JobManager whose workers only wait to be stopped: the queue, ownership and Stop without any training."""

    def __new__(cls, root: Path):
        from ui.jobs import JobManager

        class Manager(JobManager):
            def _spawn_worker(self):
                child = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.stdin.readline(); time.sleep(600)"],
                                         stdin=subprocess.PIPE, text=True, start_new_session=True)
                child.log = None
                self.children[child.pid] = child
                return child

        return Manager(root, pump_s=3600, warm=False)  # the queue moves only when a test makes it


def _config(name: str):
    from lft_core import RunConfig

    return RunConfig(dataset=f"{name}.csv")  # the dataset names the run folder, so each test job has its own


@pytest.fixture
def jobs(tmp_path):
    manager = StandInJobs(tmp_path / "saved_adapters")
    yield manager
    manager.close()
    for child in manager.children.values():
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)


def test_stop_on_a_page_whose_job_is_queued_cancels_that_job_not_the_running_one(jobs):
    """The bug: on_stop took jobs.current() first, whoever owned it, so B's Stop stopped A's run."""
    from ui.train_tab import on_stop

    a = jobs.submit(_config("a"), owner="page-a")
    b = jobs.submit(_config("b"), owner="page-b")
    assert jobs.get(a.name).state == "running" and jobs.get(b.name).state == "queued"

    said = on_stop(jobs, "page-b")
    assert said == f"Removed `{b.name}` from the queue."
    assert jobs.get(b.name) is None and not Path(b.run_dir).exists()
    assert jobs.alive(jobs.get(a.name)), "A's run is untouched"

    assert on_stop(jobs, "page-c").startswith("Nothing of yours is training or queued.")
    assert f"`{a.name}` was started from another page" in on_stop(jobs, "page-c")
    assert jobs.alive(jobs.get(a.name))

    assert on_stop(jobs, "page-a").startswith(f"**Stopped** `{a.name}`")
    assert not jobs.alive(jobs.get(a.name))
    assert json.loads((Path(a.run_dir) / "status.json").read_text())["status"] == "stopped"


def test_a_job_is_stopped_only_for_its_owner(jobs):
    a = jobs.submit(_config("a"), owner="page-a")
    said = jobs.stop(jobs.get(a.name), owner="page-b")
    assert "started from another page" in said and jobs.alive(jobs.get(a.name))


def test_a_queued_job_that_starts_between_the_pages_choice_and_its_stop_is_still_its_own(jobs):
    """The race: B's Stop picked B's queued job; before it acted, A's run ended and B's started. The stop reads the
    record again under the lock, so it stops B's (now running) job, and nothing of anyone else's."""
    from ui.train_tab import on_stop

    a = jobs.submit(_config("a"), owner="page-a")
    b = jobs.submit(_config("b"), owner="page-b")
    c = jobs.submit(_config("c"), owner="page-c")
    chosen = jobs.active("page-b")
    assert chosen.name == b.name and chosen.state == "queued"

    jobs.children[jobs.get(a.name).pid].kill()  # A's worker ends...
    wait_for(lambda: not jobs.alive(jobs.get(a.name)), 30, "A's worker to end")
    jobs._start_next()  # ...and the queue starts B's job
    assert jobs.get(b.name).state == "running"

    said = jobs.stop(chosen, owner="page-b", grace_s=10)
    assert said == f"Stopped `{b.name}`." and not jobs.alive(jobs.get(b.name))
    assert jobs.get(c.name).state in ("queued", "running"), "C's job is not touched by B's Stop"
    assert on_stop(jobs, "page-b").startswith("Nothing of yours")


def test_each_page_sees_only_its_own_jobs(jobs):
    a = jobs.submit(_config("a"), owner="page-a")
    b = jobs.submit(_config("b"), owner="page-b")
    assert jobs.active("page-a").name == a.name and jobs.active("page-b").name == b.name
    assert jobs.active("page-new") is None and jobs.latest("page-new") is None
    assert jobs.active(None) is None  # a page with no token owns nothing

    from ui.compare_tab import _runs_frame

    frame = _runs_frame(jobs.root, jobs, "page-b").set_index("run")
    assert frame.loc[a.name, "status"].endswith(" · another page's")  # a stand-in worker never says 'running'

    assert frame.loc[b.name, "status"] == "queued · yours"


def test_a_new_page_starts_from_the_defaults_not_someone_elses_running_job(jobs):
    """Reattaching gives a new browser its own token and shows nothing of the running job (which was filed with its
    model, seed and dataset); the browser that started it gets it back, with its settings."""
    import gradio as gr

    from ui.forms import DataForm, TrainForm
    from ui.train_tab import on_reattach

    with gr.Blocks():
        data, form = DataForm.create(), TrainForm.create()
    settings = [*data.setters({}), *form.setters({})]
    import dataclasses

    running = jobs.submit(dataclasses.replace(_config("someone"), seed=7), owner="page-a")

    first = next(on_reattach(jobs, data, form, settings, None, None))
    token = first[-1]
    assert first[0] == "No training yet." and token and token != "page-a"
    assert all(isinstance(update, dict) and "value" not in update for update in first[6:-1]), "the defaults stay"

    stream = on_reattach(jobs, data, form, settings, "page-a", None)
    mine = next(stream)
    stream.close()
    restored = dict(zip(settings, mine[6:-1]))
    assert mine[0].startswith(f"**Running** `{running.name}`") and restored[data.seed] == 7 and mine[-1] == "page-a"


def test_a_reload_keeps_the_form_as_this_browser_last_used_it(jobs):
    """Reload mid-Baseline: the form (seed 7) comes back from the browser's storage, not the defaults (42)."""
    import gradio as gr

    from ui.forms import DataForm, TrainForm, remember
    from ui.train_tab import on_reattach

    with gr.Blocks():
        data, form = DataForm.create(), TrainForm.create()
    settings = [*data.setters({}), *form.setters({})]
    values = {w: w.value for w in data.inputs | form.inputs}
    kept = remember(data, form, {**values, data.seed: 7, form.epochs: 0.5})
    restored = dict(zip(settings, next(on_reattach(jobs, data, form, settings, "page-x", kept))[6:-1]))
    assert restored[data.seed] == 7 and restored[form.epochs] == 0.5


# ---------------------------------------------------------------- the live view, fed with events


def _write(path: Path, *items) -> None:
    from lft_core import events

    log = events.EventLog(path)
    for item in items:
        log(item)


def _progress(step, total=20, share=None, loss=0.5, phase="train"):
    from lft_core import events

    return events.Progress(phase=phase, step=step, total=total, elapsed_s=1.0, eta_s=10.0, loss=loss, run_share=share)


def test_a_resumed_run_continues_from_its_checkpoint_in_the_view():
    """A log holds the first attempt (steps 1-7, Stopped, checkpoint at 5), then Resumed and the new attempt from
    step 6: the view is open again, its curve keeps steps 1-5 and then the new ones, and its bar starts from the
    share reached at the checkpoint instead of 0."""
    from lft_core import events
    from ui.train_tab import _View

    view = _View("run")
    for step in range(1, 8):
        view.apply(_progress(step, share=step / 40))
    view.apply(events.Stopped(message="stopped by the user", resumable=True))
    assert view.done
    view.apply(events.Resumed(from_step=5, message="from checkpoint-5"))
    assert not view.done and [s for s, _ in view.losses] == [1, 2, 3, 4, 5]
    assert view.share == pytest.approx(5 / 40)
    view.apply(events.Stage(stage="calibrate", message="timing"))
    view.apply(_progress(6, share=0.1))
    assert [s for s, _ in view.losses] == [1, 2, 3, 4, 5, 6]
    assert view.share == pytest.approx(5 / 40 + (1 - 5 / 40) * 0.1)
    status, bar, *_ = view.render()
    assert status.startswith("**Running**") and "step 6 of 20" in bar


def test_one_bar_from_click_to_finish():
    """The bar's width is the whole run's share (run_share), never back to 0% when a phase ends or begins."""
    from lft_core import events
    from ui.train_tab import PHASES, _View, progress_html

    assert "calibrate" in PHASES
    view = _View("run")
    widths = []
    for item in [events.Stage(stage="calibrate", message=""), events.Stage(stage="baseline", message=""),
                 _progress(5, 10, share=0.1, loss=None, phase="baseline"), events.Stage(stage="train", message=""),
                 _progress(3, 20, share=0.3), _progress(20, 20, share=0.7), events.Stage(stage="save", message=""),
                 events.Stage(stage="evaluate", message=""), _progress(2, 10, share=0.8, loss=None, phase="evaluate")]:
        view.apply(item)
        bar = view.render()[1]
        widths.append(float(bar.split("width:")[1].split("%")[0]))
    assert widths == sorted(widths) and widths[-1] == pytest.approx(80.0) and widths[-2] == pytest.approx(70.0)
    assert "timing a few batches" in progress_html(None, "calibrate")
    assert "80% of the run" in view.render()[1]
    view.apply(events.Estimated(seconds=125.0, phases={"train": 100.0}, threads=2, calibration_s=1.0))
    assert view.status() == "**Running** `run`: scoring the reloaded adapter… (about 2 min 05 s in all, as estimated here)"


def test_a_page_follows_one_job_only(tmp_path):
    """A page's stream ends, silently, once the same page follows another job: two streams never write the same
    outputs (the flicker between a reattached job and the page's own)."""
    from lft_core import events
    from ui.jobs import Job
    from ui.train_tab import follow

    class Jobs:
        followed: dict = {}

        def get(self, name):
            return Job(name, str(tmp_path / name), {}, state="running", pid=1)

        def alive(self, job):
            return True

        from ui.jobs import JobManager
        follow_here, still_followed = JobManager.follow_here, JobManager.still_followed

    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        _write(tmp_path / name / "events.jsonl", events.Stage(stage="train", message=""), _progress(1))
    jobs = Jobs()
    first = follow(jobs, "one", "page")
    assert next(first)[0] == "**Running** `one`: training…"
    second = follow(jobs, "two", "page")
    assert next(second)[0] == "**Running** `two`: training…"
    assert list(first) == [], "the first stream ended without writing again"
    other_page = follow(jobs, "one", "other-page")
    assert next(other_page)[0].startswith("**Running** `one`")
    assert next(second)[0].startswith("**Running** `two`")  # another page following does not end this one


# ---------------------------------------------------------------- the form


def test_a_failed_prefill_clears_the_previous_models_target_modules(monkeypatch):
    """smollm2-135m's first read failed (a conversion's I/O error): the form kept BERT's 'query, value', and Train
    failed in peft. Now the targets are cleared, the warning is one whole line, and Train leaves untouched
    pre-filled targets to the model it loads."""
    import gradio as gr

    import lft_core
    from ui.forms import DataForm, TrainForm, build_config
    from ui.train_tab import on_method

    def broken(model, method):
        raise OSError("Error while serializing: I/O error: No such file or directory (os error 2). Then more text")

    with gr.Blocks():
        data, form = DataForm.create(), TrainForm.create()
    warned = []
    monkeypatch.setattr(lft_core, "default_params", broken)
    monkeypatch.setattr(gr, "Warning", lambda message, *a, **k: warned.append(message))
    *_, targets, options, prefilled = on_method("smollm2-135m", "lora")
    assert targets["value"] == "" and prefilled == ""
    assert warned == ["Target modules for smollm2-135m will be chosen when training starts (Error while "
                      "serializing: I/O error: No such file or directory (os error 2))."]

    values = {w: w.value for w in data.inputs | form.inputs}
    assert values[form.target_modules] == "query, value"  # pre-filled for the default model, never edited
    cfg = build_config(data, form.rederive_targets({**values, data.model: "smollm2-135m"}, "query, value"), form)
    assert "target_modules" not in cfg.method_params
    edited = form.rederive_targets({**values, form.target_modules: "q_proj, v_proj"}, "query, value")
    assert build_config(data, edited, form).method_params["target_modules"] == ["q_proj", "v_proj"]


def test_half_an_epoch_stays_half_an_epoch():
    import gradio as gr

    from ui.forms import DataForm, TrainForm, build_config

    with gr.Blocks():
        data, form = DataForm.create(), TrainForm.create()
    values = {w: w.value for w in data.inputs | form.inputs}
    assert (form.epochs.minimum or 0) < 0.5 and form.epochs.step == 0.5  # the whole-step slider from 1 rounded it
    assert form.epochs.preprocess(0.5) == 0.5
    assert build_config(data, {**values, form.epochs: 0.5}, form).epochs == 0.5
    assert build_config(data, {**values, form.epochs: 2.0}, form).epochs == 2


def test_messages_in_the_app_name_the_form_field_not_the_cli_flag():
    from lft_core import LftError
    from ui.forms import error, user_message

    cli = "cannot tell which column holds the text; pass --text-column (columns: question, passage, label)"
    assert user_message(LftError(cli)) == ("cannot tell which column holds the text; set the field 'Text column' "
                                           "(columns: question, passage, label)")
    assert "--" not in str(error(LftError("--label-column 'x' is not a column; the columns are: a, b")))
    assert user_message("pass --overwrite") == "pass --overwrite"  # no form field for it: the words stay


def test_the_baseline_says_when_it_waited_or_read_saved_scores():
    from ui.baseline_tab import _took

    assert _took(0.2, 0.0, False, 41.0) == ("Took 0 s; read from the saved evaluation of the same settings "
                                            "(scoring took 41 s then).")
    assert _took(50, 45, False, 41.0).startswith("Took 50 s, 45 s of it waiting for another evaluation")
    assert _took(40, 0, True, 40.0) == "Took 40 s."


def test_the_baseline_waits_visibly_behind_an_orphaned_evaluation(monkeypatch, tmp_path):
    """A click behind an evaluation whose page was reloaded says it is waiting, instead of waiting silently."""
    import threading

    import gradio as gr

    import lft_core
    from ui import baseline_tab
    from ui.forms import DataForm

    with gr.Blocks():
        form = DataForm.create()
    values = {w: w.value for w in form.inputs}
    said = []
    baseline_tab._SCORING.acquire()  # an evaluation whose page was reloaded is still scoring
    released = threading.Timer(0.5, baseline_tab._SCORING.release)
    try:
        monkeypatch.setattr(baseline_tab, "load_data", lambda cfg: None)
        monkeypatch.setattr(lft_core, "evaluate_base", lambda *a, **k: (_ for _ in ()).throw(lft_core.LftError("x")))
        released.start()
        with pytest.raises(gr.Error):
            baseline_tab.on_baseline(form, values, lambda *a, desc="", **k: said.append(desc))
    finally:
        released.join()
    assert any(d.startswith("waiting for another base-model evaluation") for d in said), said
    assert not baseline_tab._SCORING.locked()


# ---------------------------------------------------------------- resume, with real workers


@pytest.mark.slow
def test_the_live_view_of_a_resumed_run_reaches_a_step_beyond_its_checkpoint(tiny_models, keyword_csv, tmp_path):
    """Resume used to replay the run's log from the start, meet the old Stopped and end: the page said 'Stopped'
    while the worker trained on. Now the view streams the new attempt past the checkpoint's step."""
    import lft_core
    from ui.jobs import JobManager
    from ui.train_tab import follow, on_stop

    jobs = JobManager(tmp_path / "saved_adapters", pump_s=0.2, warm=False)
    try:
        cfg = lft_core.RunConfig(model=tiny_models["bert"], dataset=keyword_csv, epochs=40, max_length=32,
                                 batch_size=8, save_steps=5, tfidf_reference=False)
        job = jobs.submit(cfg, owner="page-a")
        for status, bar, *_ in follow(jobs, job.name, "page-a"):
            if "training: step" in bar and lft_core.runs.last_checkpoint(Path(job.run_dir)) is not None:
                break
        assert on_stop(jobs, "page-a").startswith(f"**Stopped** `{job.name}`")
        checkpoint = int(Path(lft_core.runs.last_checkpoint(Path(job.run_dir))).name.split("-")[1])

        jobs.submit(resume=job.name, owner="page-a")
        seen, deadline = [], time.time() + 400
        for status, bar, *_ in follow(jobs, job.name, "page-a"):
            seen.append(status)
            assert time.time() < deadline, "the resumed run did not get past its checkpoint in time"
            if "training: step" in bar and int(bar.split("training: step ")[1].split(" ")[0]) > checkpoint:
                break
        else:
            pytest.fail(f"the view ended before a step beyond {checkpoint}: {seen[-3:]}")
        assert not any(s.startswith("**Stopped**") for s in seen), "the old Stopped did not end the new stream"
        assert "of the run" in bar
        assert on_stop(jobs, "page-a").startswith("**Stopped**")
    finally:
        jobs.close()
        current = jobs.current()
        if current is not None:
            jobs.stop(current)


# ---------------------------------------------------------------- two pages on one app, in a real browser


def _bigger_keyword_csv(path: Path) -> str:
    from conftest import keyword_frame

    keyword_frame(1500, seed=3).to_csv(path, index=False)  # long enough for page A to be training throughout
    return str(path)


def _choose(page, label: str, value: str) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(value)
    box.press("Enter")


def _tiny_settings(page, model: str, data: str) -> None:
    _choose(page, "Model", model)
    _choose(page, "Dataset", data)
    length = page.get_by_label("number input for Max length (tokens)")
    length.fill("64")  # the tiny model takes 128 tokens at most
    length.press("Enter")


def _status(page) -> str:
    return page.locator("#train-status").inner_text(timeout=10_000)


@pytest.mark.slow
def test_two_pages_on_one_app(tiny_models, tmp_path):
    """Page A trains. Page B opens with the defaults (not A's job), queues its own job and sees only that one (its
    status never flickers to A's); All runs marks A's run as another page's; B's Stop cancels B's queued job, and
    A trains on, untouched, until A stops it. Screenshots at 1280x720 and 390x844 go to docs/."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh --dev installs it)")
    from playwright.sync_api import expect, sync_playwright

    root = tmp_path / "saved_adapters"
    data = _bigger_keyword_csv(tmp_path / "keywords.csv")
    env = {**os.environ, "LFT_ADAPTERS_DIR": str(root)}
    process, url = start_app(REPO, env, tmp_path / "app.log")

    def statuses() -> dict:
        return {p.name: json.loads((p / "status.json").read_text())["status"] for p in root.iterdir()
                if (p / "status.json").exists()} if root.exists() else {}

    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
            a = browser.new_context(viewport={"width": 1280, "height": 720}).new_page()
            a.goto(url, wait_until="load")
            _tiny_settings(a, tiny_models["bert"], data)
            a.get_by_label("Validation/test cap (texts)").fill("30")
            a.get_by_role("tab", name="3. Fine-tune").click()
            a.get_by_label("Epochs").first.fill("20")
            a.get_by_label("Batch size (texts)").fill("8")
            a.get_by_label("Epochs").first.press("Enter")
            a.evaluate("window.scrollTo(0, 0)")
            train_a = a.get_by_role("button", name="Train", exact=True)
            assert train_a.bounding_box()["y"] + train_a.bounding_box()["height"] <= 720, "Train is above the fold"
            train_a.click()
            expect(a.locator("#train-bar")).to_contain_text("training: step", timeout=300_000)
            a_name = wait_for(lambda: next((n for n, s in statuses().items() if s == "running"), None), 60, "A's run")
            a.screenshot(path=str(DOCS / "shared-1280-a-training.png"))

            b = browser.new_context(viewport={"width": 1280, "height": 720}).new_page()
            b.goto(url, wait_until="load")
            b.get_by_role("tab", name="3. Fine-tune").click()
            expect(b.locator("#train-status")).to_have_text("No training yet.", timeout=30_000)
            b.get_by_role("tab", name="1. Model & data").click()
            assert b.get_by_label("Model", exact=True).input_value() == "minilm", "B opens with the defaults"
            _tiny_settings(b, tiny_models["bert"], data)
            b.get_by_role("tab", name="3. Fine-tune").click()
            b.get_by_label("Epochs").first.fill("1")
            b.get_by_label("Epochs").first.press("Enter")
            b.get_by_role("button", name="Train", exact=True).click()
            expect(b.locator("#train-status")).to_contain_text(f"waiting behind {a_name}", timeout=60_000)
            b_name = next(n for n, s in statuses().items() if s == "queued")
            for _ in range(6):  # B's outputs are written by B's stream only: never A's status or bar, for 3 s
                assert _status(b).startswith(f"Queued {b_name}"), _status(b)
                assert "training: step" not in b.locator("#train-bar").inner_text()
                b.wait_for_timeout(500)  # samples apart by more than the 0.5 s poll of a second stream
            b.screenshot(path=str(DOCS / "shared-1280-b-queued.png"))

            b.get_by_role("tab", name="4. Compare").click()
            b.get_by_role("button", name="Refresh").click()
            runs = b.locator("#runs-table")
            expect(runs).to_contain_text("another page's", timeout=30_000)
            expect(runs).to_contain_text("queued · yours", timeout=30_000)
            runs.scroll_into_view_if_needed()
            note = runs.locator("th[title='note']").bounding_box()
            assert note["x"] + note["width"] <= 1280, "a failed run's reason is on screen"
            b.screenshot(path=str(DOCS / "shared-1280-b-all-runs.png"))
            b.set_viewport_size({"width": 390, "height": 844})
            for name in ("3. Fine-tune", "4. Compare"):
                expect(b.get_by_role("tab", name=name)).to_be_visible(timeout=10_000)  # not behind a menu
            runs.scroll_into_view_if_needed()
            first_cell = runs.locator("[data-col='0']").first  # the table re-measures its columns after the resize
            wait_for(lambda: first_cell.bounding_box()["width"] >= 150, 20, "readable run names on a phone")
            b.screenshot(path=str(DOCS / "shared-390-b-all-runs.png"))
            b.get_by_role("tab", name="3. Fine-tune").click()
            b.locator("#train-status").scroll_into_view_if_needed()
            b.screenshot(path=str(DOCS / "shared-390-b-queued.png"))

            b.get_by_role("button", name="Stop").click()
            expect(b.locator("#train-status")).to_contain_text(f"Removed {b_name} from the queue", timeout=60_000)
            expect(b.locator("#train-bar")).to_contain_text("cancelled", timeout=30_000)  # B's stream ended too
            b.locator("#train-status").scroll_into_view_if_needed()
            assert b_name not in statuses() and statuses()[a_name] == "running", statuses()
            assert _status(a).startswith(f"Running {a_name}"), "A is untouched"
            expect(a.locator("#train-bar")).to_contain_text("training: step", timeout=30_000)
            a.screenshot(path=str(DOCS / "shared-1280-a-after-b-stopped.png"))
            b.screenshot(path=str(DOCS / "shared-390-b-stopped.png"))

            a.get_by_role("button", name="Stop").click()
            expect(a.locator("#train-status")).to_contain_text(f"Stopped {a_name}", timeout=60_000)
            assert statuses()[a_name] == "stopped"
            browser.close()
    finally:
        process.terminate()
        process.wait(timeout=60)


# ---------------------------------------------------------------- layout


def test_the_layout_fits_a_phone_and_the_runs_table_shows_the_note(tmp_path):
    """On a phone (390 px) tabs 3-4 hid behind a '⋯' menu: the tabs wrap instead. A failed run's reason (the note)
    was the last of ten columns, off-screen: it comes third now."""
    import app
    from ui.compare_tab import _runs_frame
    from ui.jobs import JobManager

    jobs = JobManager(tmp_path / "saved_adapters", warm=False)
    try:
        demo = app.build_app(jobs)
        config, info = demo.config, demo.get_api_info()["named_endpoints"]
    finally:
        jobs.close()
    for name in ("/train", "/stop", "/reattach", "/resume", "/refresh_runs"):
        # the page's session reaches the callback as gr.Request (through a partial it came in as an input, None)
        assert "request" not in [p["parameter_name"] for p in info[name]["parameters"]], name
    (tabs,) = [c for c in config["components"] if c.get("props", {}).get("elem_id") == "main-tabs"]
    assert tabs["props"]["overflow_behavior"] == "wrap"
    assert list(_runs_frame(tmp_path / "saved_adapters").columns)[:3] == ["run", "status", "note"]


def test_compare_charts_stay_in_range_and_titles_apart():
    """The Pareto y axis ran above 1 (accuracy cannot); the confusion matrices' figure title sat on the left
    panel's title."""
    from lft_core import report

    rows = [{"run": "a", "method": "lora", "trainable": 1000, "accuracy": 1.0, "train_s": 10},
            {"run": "b", "method": "ia3", "trainable": 100, "accuracy": 0.8, "train_s": 5}]
    assert report.pareto(rows).layout.yaxis.range[1] == 1.0

    from lft_core.evaluate import Metrics

    metrics = Metrics(scores={"accuracy": 1.0, "macro_f1": 1.0}, per_class={}, confusion=[[2, 0], [0, 2]], n=4)
    figure = report.confusion_pair(metrics, metrics, ["x", "y"])
    assert figure.layout.title.text is None  # one line of titles: the panels'
    assert [a.text for a in figure.layout.annotations][:2] == ["Confusion matrix, base (test)", "fine-tuned (test)"]
