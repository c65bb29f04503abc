"""The app, driven as users and scripts drive it: callbacks as plain functions, the API through gradio_client
against a server started here on 127.0.0.1, and (test_app_as_launched.py) a real browser on a fresh clone.

Every test makes what it needs; waits poll with a deadline, never a fixed sleep."""

import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout: float, what: str, every: float = 0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def start_app(cwd: Path, env: dict, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**env, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False"}
    process = subprocess.Popen([sys.executable, "app.py"], cwd=cwd, env=env, stdout=log.open("w"),
                               stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"

    def up():
        if process.poll() is not None:
            pytest.fail("the app exited: " + log.read_text()[-3000:])
        try:
            return urllib.request.urlopen(url, timeout=2).status == 200
        except OSError:
            return False

    wait_for(up, 120, "the app to answer", every=0.5)
    return process, url


def call(client, api: str, values: dict | None = None, submit: bool = False):
    """Call an endpoint with its inputs named by their labels; the others keep the form's defaults."""
    values = dict(values or {})
    parameters = client.view_api(return_format="dict", print_info=False)["named_endpoints"][api]["parameters"]
    args = [values.pop(p["label"]) if p["label"] in values else p["parameter_default"] for p in parameters]
    assert not values, f"{api} has no inputs labelled {list(values)}"
    return client.submit(*args, api_name=api) if submit else client.predict(*args, api_name=api)


def finish(job, timeout: float):
    wait_for(job.done, timeout, "the job to finish", every=0.5)
    if job.exception() is not None:
        raise job.exception()
    return job.outputs()


# ---------------------------------------------------------------- callbacks as plain functions


def test_form_mistakes_are_one_line_and_need_no_model():
    from lft_core import LftError
    from ui.forms import DataForm, TrainForm, build_config

    import gradio as gr

    with gr.Blocks():
        data, train = DataForm.create(), TrainForm.create()
    values = {w: w.value for w in data.inputs | train.inputs}
    assert build_config(data, values, train).learning_rate is None  # empty: the method's default
    for widget, value, fragment in [(train.learning_rate, "0", "learning_rate must be a finite number > 0"),
                                    (train.learning_rate, "fast", "learning_rate must be a number (got 'fast')"),
                                    (data.max_train_samples, "abc", "max_train_samples must be a whole number"),
                                    (train.options, "[not, a, mapping]", "method options must be 'key: value'"),
                                    (data.dataset, "", "choose a dataset")]:
        with pytest.raises(LftError) as err:
            build_config(data, {**values, widget: value}, train)
        assert fragment in str(err.value) and "\n" not in str(err.value)


def test_training_streams_without_gradios_pulsing_border(tmp_path):
    """The Train stream (and its reattach and resume) shows its own status line and progress bar. With Gradio's
    'full' progress the streamed outputs kept a pulsing border: in a local headless Chromium it used 16 of every 120
    CPU-seconds of a 2-core machine during training (8.7 without), and the worker trained ~10% slower."""
    import app
    from ui.jobs import JobManager

    jobs = JobManager(tmp_path / "saved_adapters", warm=False)
    try:
        dependencies = app.build_app(jobs).config["dependencies"]
    finally:
        jobs.close()
    streams = [d for d in dependencies if d.get("api_name") in ("train", "reattach")]
    assert len(streams) == 2 and all(d["show_progress"] == "hidden" for d in streams), streams
    resume_stream = [d for d in dependencies if d["show_progress"] == "hidden" and d.get("api_name") not in
                     ("train", "reattach")]
    assert len(resume_stream) == 1  # the resumed run's stream, which has no API name


def test_an_unknown_model_fails_within_seconds_offline(monkeypatch):
    import lft_core

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    start = time.time()
    with pytest.raises(lft_core.LftError, match="offline"):
        lft_core.check_run(lft_core.RunConfig(model="someone/no-such-model"), output=False)
    assert time.time() - start < 5


def test_a_rejected_upload_clears_itself_and_says_what_stays(tmp_path):
    import lft_core
    from ui.data_tab import on_upload

    header_only = tmp_path / "header.csv"
    header_only.write_text("text,label\n")
    picture = tmp_path / "picture.csv"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20)
    for bad in (header_only, picture):
        upload, dataset, *_, note = on_upload(str(bad), "bbc-news")
        assert upload is None and "was not used" in note and "The dataset stays bbc-news" in note
    assert not list((lft_core.adapters_root() / ".uploads").glob("*"))  # rejected files are not kept


def test_upload_row_cap(tmp_path, monkeypatch):
    from ui.data_tab import on_upload

    monkeypatch.setenv("LFT_MAX_UPLOAD_ROWS", "1000")
    big = tmp_path / "big.csv"
    big.write_text("text,label\n" + "".join(f"row {i},a\n" for i in range(5000)))
    *_, note = on_upload(str(big), "bbc-news")
    assert "limited to 1,000 rows" in note


# ---------------------------------------------------------------- the API, through gradio_client


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("app") / "saved_adapters"
    env = {**os.environ, "LFT_ADAPTERS_DIR": str(root)}
    process, url = start_app(REPO, env, root.parent / "app.log")
    yield {"url": url, "root": root}
    process.terminate()
    process.wait(timeout=60)


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server["url"], verbose=False)


@pytest.fixture(scope="module")
def trained_run(client, server, keyword_csv) -> str:
    """One run trained through the app's API (the keyword task, 3 epochs), for the tests that compare and predict."""
    job = call(client, "/train", {"Dataset": keyword_csv, "Max length (tokens)": 32, "Learning rate": "4e-3",
                                  "Epochs": 3, "Batch size (texts)": "16"}, submit=True)
    outputs = finish(job, 600)
    final = outputs[-1][0]
    assert "Finished" in final and "Fine-tuning improved" in final, final
    return final.split("`")[1]  # "**Finished** `<run name>`: ..."


def test_train_streams_progress_and_says_what_it_did(client, keyword_csv):
    job = call(client, "/train", {"Train subset (texts)": "200", "Validation/test cap (texts)": "40", "Epochs": 1},
               submit=True)
    outputs = finish(job, 600)
    assert outputs[0][0] == "**Checking** the settings…"  # not the previous job's last word
    bars = [o[1] for o in outputs]
    assert any("training: step" in b and "%)" in b and "left (with evaluation and saving)" in b for b in bars), bars[-3:]
    assert "done" in bars[-1]
    assert outputs[-1][0].startswith("**Finished**"), outputs[-1][0]


def test_compare_predict_and_take_the_run_home(client, trained_run, tmp_path):
    from conftest import plain_peft_predictions_match

    name = trained_run
    verdict, table, *_ = call(client, "/compare", {"Saved adapters to compare": [name]})
    assert "Fine-tuning improved" in verdict
    row = dict(zip(table["headers"], table["data"][0]))
    assert row["accuracy"] > row["base accuracy"] and row["reload"] == "passed"
    base, tuned, latency = call(client, "/predict", {"Saved adapters to compare": [name],
                                                     "Text": "goal match team win the cup"})
    assert tuned["label"] == "sport" and {c["label"] for c in base["confidences"]} == {"food", "sport", "tech"}
    zipped, note = call(client, "/download_zip", {"Run": name})
    with zipfile.ZipFile(zipped) as archive:
        archive.extractall(tmp_path / "elsewhere")
    out = plain_peft_predictions_match(tmp_path / "elsewhere" / name, tmp_path, max_length=32)
    assert out.returncode == 0, out.stderr[-2000:]
    report, _ = call(client, "/report", {"Run": name})
    assert Path(report).read_text().startswith("<!doctype html>")


def test_predict_a_whole_file(client, trained_run, tmp_path):
    from gradio_client import handle_file

    texts = tmp_path / "new.csv"
    pd.DataFrame({"text": ["goal match team win", "software chip code data", "bread cheese soup"]}).to_csv(texts, index=False)
    result = call(client, "/predict_file", {"Run to label with": trained_run,
                                            "Texts (csv / jsonl with a text column, or txt: one per line)": handle_file(str(texts))})
    assert Path(result).name == f"new-{trained_run}-predictions.csv"  # the file says which run labelled it
    frame = pd.read_csv(result)
    assert frame.label.tolist() == ["sport", "tech", "food"]
    assert {"probability", "p_food", "p_sport", "p_tech"} <= set(frame.columns)


def test_mistakes_in_the_form_are_refused_at_once(client, keyword_csv, tmp_path):
    from gradio_client.exceptions import AppError

    header = tmp_path / "header.csv"
    header.write_text("text,label\n")
    cases = [({"Learning rate": "0"}, "learning_rate must be a finite number > 0"),
             ({"Model": "someone/not-on-this-machine"}, "offline"),
             ({"Dataset": str(header)}, "has no data rows"),
             ({"Train subset (texts)": "lots"}, "max_train_samples must be a whole number")]
    for values, fragment in cases:
        start = time.time()
        with pytest.raises(AppError, match=fragment):
            call(client, "/train", {"Dataset": keyword_csv, **values})
        assert time.time() - start < 15, values  # refused by the callback, not after a worker started


@pytest.mark.parametrize("bad", ["../../etc", "/etc", "../x"])
def test_runs_outside_saved_adapters_are_refused(client, bad):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="not a folder directly inside"):
        call(client, "/compare", {"Saved adapters to compare": [bad]})


def test_push_offline_says_so_quickly(client, trained_run):
    from gradio_client.exceptions import AppError

    start = time.time()
    with pytest.raises(AppError, match="unreachable"):
        call(client, "/push", {"Run": trained_run, "Hub repository": "someone/adapter",
                               "Access token (write)": "hf_x"})
    assert time.time() - start < 10


def _status(root: Path, name: str) -> str:
    path = root / name / "status.json"
    return json.loads(path.read_text())["status"] if path.exists() else "missing"


def test_queue_reattach_stop_and_resume(client, server, trained_run):
    """A long job runs; a second one, from another session, waits behind it and says so; a new page opens with
    nothing of either (jobs belong to the page that queued them); predictions keep answering; the second session's
    Stop leaves the running job alone; its owner's Stop ends it as 'stopped' with a checkpoint; the queued job then
    starts; the stopped run can be resumed from the run list."""
    from gradio_client import Client

    root = server["root"]
    long_job = call(client, "/train", {"Train subset (texts)": "400", "Validation/test cap (texts)": "40", "Epochs": 5,
                                       "Seed": 7}, submit=True)
    wait_for(lambda: any("training: step" in (o[1] or "") for o in long_job.outputs()), 300, "training to start")
    running = next(p.name for p in root.iterdir() if p.is_dir() and _status(root, p.name) == "running")

    second_client = Client(server["url"], verbose=False)
    second = call(second_client, "/train", {"Train subset (texts)": "100", "Epochs": 1}, submit=True)
    wait_for(lambda: any(f"waiting behind `{running}`" in (o[0] or "") for o in second.outputs()), 120, "the queue note")

    page = Client(server["url"], verbose=False).submit(api_name="/reattach")
    wait_for(lambda: len(page.outputs()) > 0, 60, "a reattached page")
    first = page.outputs()[0]
    assert first[0] == "No training yet.", first[0]  # another visitor's running job is not shown here
    assert 7 not in first and 7.0 not in first  # nor its seed put in this page's form

    def one(i):
        return Client(server["url"], verbose=False).predict(
            [trained_run], f"goal match team {i}", api_name="/predict")

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(one, range(8), timeout=300))
    assert all(a[1]["label"] == "sport" for a in answers)

    stranger = Client(server["url"], verbose=False).predict(api_name="/stop")
    assert stranger.startswith("Nothing of yours") and _status(root, running) == "running", stranger
    message = client.predict(api_name="/stop")
    assert "Stopped" in message and _status(root, running) == "stopped"
    final = finish(long_job, 120)[-1][0]
    assert final.startswith("**Stopped**") and "without finishing" not in final
    assert "checkpoint was kept" in final

    queued_name = wait_for(lambda: next((p.name for p in root.iterdir() if p.is_dir() and p.name != running
                                         and _status(root, p.name) == "running"), None), 120, "the queued job to start")
    assert "Stopped" in second_client.predict(api_name="/stop")
    finish(second, 120)
    assert _status(root, queued_name) == "stopped"

    note = call(client, "/resume", {"Run": running})  # the note alone: the tab switch and State are not outputs
    assert "Resuming" in note
    wait_for(lambda: _status(root, running) == "running", 120, "the resumed run to start")
    assert "Stopped" in client.predict(api_name="/stop")
    runs = call(client, "/refresh_runs")[1]
    statuses = {row[0]: row[1] for row in runs["data"]}
    assert statuses[running].startswith("stopped") and statuses[queued_name].startswith("stopped")


def test_the_spare_worker_imports_only_while_nothing_trains(tiny_models, keyword_csv, tmp_path):
    """A spare worker's imports would take a core from the job that has just started beside it: the job takes
    the spare, no new one is made while it trains alone, and one is made once it has ended."""
    from lft_core import RunConfig
    from ui.jobs import JobManager

    jobs = JobManager(tmp_path / "saved_adapters", pump_s=0.2, warm=True)
    try:
        idle_spare = jobs.spare
        assert idle_spare is not None and idle_spare.poll() is None
        job = jobs.submit(RunConfig(model=tiny_models["bert"], dataset=keyword_csv, epochs=1, max_length=32))
        assert jobs.get(job.name).pid == idle_spare.pid and jobs.spare is None
        wait_for(lambda: jobs.get(job.name).state == "ended", 240, "the job to end")
        status = Path(job.run_dir) / "status.json"
        assert json.loads(status.read_text())["status"] == "complete"
        spare = wait_for(lambda: jobs.spare, 30, "a new spare worker")
        made = [int(p.stem.split("-")[1]) / 1e9 for p in jobs.jobs_dir.glob("worker-*.log")]
        assert len(made) == 2 and not [t for t in made if jobs.get(job.name).started < t < status.stat().st_mtime]
        assert spare.pid != idle_spare.pid and spare.poll() is None
    finally:
        jobs.close()
    assert jobs.spare is None and spare.poll() is not None
