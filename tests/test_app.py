"""The app, driven as users and scripts drive it: through gradio_client against a server started here on
127.0.0.1, then once in a real headless browser (Playwright with Debian's Chromium)."""

import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
KW_ARGS = [None, None, None, None, 32, 42]  # text col, label col, train cap, eval cap, max length, seed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("app") / "saved_adapters"
    root.mkdir()
    port = _free_port()
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "LFT_ADAPTERS_DIR": str(root), "LFT_MAX_UPLOAD_ROWS": "1000", "GRADIO_ANALYTICS_ENABLED": "False"}
    log = open(root.parent / "app.log", "w")
    process = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    started = time.time()
    while time.time() - started < 60:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("the app did not start: " + (root.parent / "app.log").read_text()[-2000:])
    yield {"url": url, "root": root, "startup_s": time.time() - started}
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server["url"], verbose=False)


def _train(client, dataset, epochs=3, method="lora"):
    job = client.submit("minilm", dataset, *KW_ARGS, method, 0.004, epochs, 16, 8, 16, 0.05, "query, value", "",
                        api_name="/train")
    while not job.done():
        time.sleep(0.5)
    return job.outputs()


def _runs(root: Path):
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def test_api_baseline_train_compare_predict(client, server, keyword_csv):
    summary = client.predict("minilm", keyword_csv, *KW_ARGS, api_name="/baseline")[0]
    assert "Base model:" in summary and "accuracy" in summary
    outputs = _train(client, keyword_csv)
    final = outputs[-1][0]
    assert "finished" in final and "Fine-tuning improved" in final, final
    assert any("step" in o[0] for o in outputs[:-1])  # progress was streamed while training
    run_dir = str(_runs(server["root"])[-1])
    table = client.predict([run_dir], api_name="/compare")[0]
    row = dict(zip(table["headers"], table["data"][0]))
    assert row["tuned acc"] > row["base acc"] and row["reload check"] == "passed"
    base, tuned, latency = client.predict([run_dir], "goal match team win the cup", api_name="/predict")
    assert tuned["label"] == "sport"
    assert {c["label"] for c in base["confidences"]} == {"food", "sport", "tech"}
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        client.predict([run_dir], "software chip and code", api_name="/predict")
        timings.append(time.perf_counter() - start)
    (ARTIFACTS).mkdir(exist_ok=True)
    (ARTIFACTS / "latency.json").write_text(json.dumps({"predict_roundtrip_s": timings, "startup_s": server["startup_s"]}))


def test_runs_outside_saved_adapters_are_refused(client):
    from gradio_client.exceptions import AppError

    for bad in ("../../etc", "/etc", "../x"):
        with pytest.raises(AppError, match="not a folder directly inside"):
            client.predict([bad], api_name="/compare")


def test_health_check(client, keyword_csv):
    summary, notes, *_ = client.predict("minilm", keyword_csv, *KW_ARGS, api_name="/check_data")
    assert "train" in summary and "Truncated" in summary


def test_upload_row_cap(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    big = tmp_path / "big.csv"
    big.write_text("text,label\n" + "".join(f"row {i},a\n" for i in range(5000)))
    with pytest.raises(AppError, match="limited to 1,000 rows"):
        client.predict(handle_file(str(big)), api_name="/upload")


def test_stop_and_concurrent_predictions_during_training(client, server, keyword_csv):
    from gradio_client import Client

    run_dir = str(_runs(server["root"])[-1])  # the finished run from the first test
    before = set(_runs(server["root"]))
    job = client.submit("minilm", "bbc-news", None, None, 400, 50, 128, 42, "lora", 0.004, 5, 16, 8, 16, 0.05,
                        "query, value", "", api_name="/train")
    deadline = time.time() + 120
    while time.time() < deadline and not any("step" in (o[0] or "") for o in job.outputs()):
        time.sleep(0.5)
    assert any("step" in (o[0] or "") for o in job.outputs()), "training did not start"

    # a bounded load test on 127.0.0.1: 20 predictions at once while training runs, each from its own client
    def one(i):
        return Client(server["url"], verbose=False).predict([run_dir], f"goal match team {i}", api_name="/predict")

    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(one, range(20), timeout=300))
    assert all(a[1]["label"] == "sport" for a in answers)

    # a second page reattaches to the running job and sees it live
    second = Client(server["url"], verbose=False).submit(api_name="/reattach")
    time.sleep(3)
    assert any("step" in (o[0] or "") or "🏃" in (o[0] or "") for o in second.outputs())

    assert "Stopped" in client.predict(api_name="/stop")
    while not job.done():
        time.sleep(0.5)
    new = set(_runs(server["root"])) - before
    assert len(new) == 1
    stopped = new.pop()
    status = json.loads((stopped / "status.json").read_text())["status"]
    assert status == "stopped", status
    assert not (stopped / "adapter_config.json").exists() and not (stopped / "report.json").exists()
    runs = client.predict(api_name="/refresh_runs")
    assert str(stopped) not in json.dumps(runs)


@pytest.mark.slow
def test_browser_click_through(server, keyword_csv):
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh --dev installs it)")
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(server["url"], wait_until="load")
        page.get_by_role("button", name="Check dataset health").wait_for(timeout=30_000)
        # 1. Model & data: type the dataset path into the dropdown
        dataset = page.get_by_label("Dataset")
        dataset.fill(keyword_csv)
        dataset.press("Enter")
        page.get_by_label("Max length (tokens)").first.fill("32")
        page.get_by_label("Max length (tokens)").first.press("Enter")
        # 2. Baseline
        page.get_by_role("tab", name="2. Baseline").click()
        page.get_by_role("button", name="Evaluate base model").click()
        expect(page.get_by_text("Base model:")).to_be_visible(timeout=60_000)
        # 3. Fine-tune
        page.get_by_role("tab", name="3. Fine-tune").click()
        page.get_by_label("Epochs").first.fill("3")
        page.get_by_label("Epochs").first.press("Enter")
        page.get_by_role("button", name="Train").click()
        expect(page.get_by_text("finished.", exact=False)).to_be_visible(timeout=120_000)
        loss_points = page.locator(".js-plotly-plot .scatterlayer .trace .point, .js-plotly-plot .scatterlayer path.js-line")
        assert loss_points.count() > 0, "the loss chart received no points"
        # 4. Compare
        page.get_by_role("tab", name="4. Compare").click()
        page.get_by_role("button", name="Compare", exact=True).click()
        bars = page.locator(".js-plotly-plot .barlayer .point")
        expect(bars.first).to_be_visible(timeout=30_000)
        page.get_by_label("Text", exact=True).fill("goal match team win the cup")
        page.get_by_role("button", name="Predict").click()
        expect(page.get_by_text("ms for both models")).to_be_visible(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "app-compare.png"), full_page=True)
        labels = page.locator("[data-testid='label-output-value']")
        assert labels.count() >= 2, "both models' predictions are shown"
        browser.close()
