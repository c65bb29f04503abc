"""The entry points exactly as the README runs them, from a working directory laid out as a fresh clone: the CLI
(run, then predict on the run it saved) and the app, clicked through in a real browser (Playwright + Debian's Chromium):
a working directory laid out as a fresh clone, no LFT_* or Hugging Face variables, the default relative
saved_adapters/, the built-in model and data. All four tabs, a live prediction for the run it just trained, and
Stop. Screenshots at 1280x720 go to test-artifacts/."""

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from test_app import start_app

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")


def fresh_clone(target: Path) -> Path:
    """The tracked files of the repo, as `git clone` lays them out (no venv, no runs, no caches)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def as_a_user_launches_it() -> dict:
    """The environment a new user's shell has: nothing the README does not mention."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("LFT_", "HF_", "PYTEST"))}


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    clone = fresh_clone(tmp_path_factory.mktemp("clone"))
    process, url = start_app(clone, as_a_user_launches_it(), clone.parent / "app.log")
    yield {"url": url, "clone": clone}
    process.terminate()
    process.wait(timeout=60)


@pytest.mark.slow
def test_cli_as_the_readme_runs_it(tmp_path):
    """`python -m lft_core run` from a fresh clone's root with no LFT_* variables lands in the relative
    saved_adapters/, and `predict --adapter saved_adapters/<run>` (the README's form) finds it."""
    clone = fresh_clone(tmp_path / "clone")
    env = as_a_user_launches_it()
    run = subprocess.run([sys.executable, "-m", "lft_core", "run", "--max-train-samples", "100",
                          "--max-eval-samples", "40", "--epochs", "1"], cwd=clone, env=env, capture_output=True,
                         text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    (folder,) = [p for p in (clone / "saved_adapters").iterdir() if not p.name.startswith(".")]
    assert folder.name.startswith("minilm-bbc-news-lora-") and (folder / "adapter_model.safetensors").exists()
    assert "saved: " in run.stdout and folder.name in run.stdout
    predicted = subprocess.run([sys.executable, "-m", "lft_core", "predict", "--adapter", f"saved_adapters/{folder.name}",
                                "--input", "-"], cwd=clone, env=env, input="The striker scored twice in the final\n",
                               capture_output=True, text=True, timeout=300)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    frame = pd.read_csv(io.StringIO(predicted.stdout))
    labels = json.loads((folder / "base_model.json").read_text())["id2label"].values()
    assert len(frame) == 1 and frame.label[0] in labels and 0 < frame.probability[0] <= 1


@pytest.mark.slow
def test_click_through_all_four_tabs_then_stop(launched):
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh --dev installs it)")
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    runs = launched["clone"] / "saved_adapters"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        page.goto(launched["url"], wait_until="load")

        # 1. Model & data, on the defaults, with a smaller train split typed in as a user would
        page.get_by_role("button", name="Check dataset health").click(timeout=60_000)
        expect(page.get_by_text("Splits:")).to_be_visible(timeout=120_000)
        page.screenshot(path=str(ARTIFACTS / "app-1-data.png"))
        # a check that fails leaves no health of the last dataset under its error
        dataset = page.get_by_label("Dataset", exact=True)
        dataset.fill("no-such-file.csv")
        dataset.press("Enter")
        page.get_by_role("button", name="Check dataset health").click()
        expect(page.get_by_text("no-such-file.csv").last).to_be_visible(timeout=60_000)
        expect(page.get_by_text("Splits:")).to_have_count(0, timeout=60_000)
        dataset.fill("bbc-news")
        dataset.press("Enter")
        page.get_by_label("Train subset (texts)").fill("400")

        # 2. Baseline
        page.get_by_role("tab", name="2. Baseline").click()
        page.get_by_role("button", name="Evaluate base model").click()
        expect(page.get_by_text("Base model:")).to_be_visible(timeout=180_000)
        page.screenshot(path=str(ARTIFACTS / "app-2-baseline.png"))

        # 3. Fine-tune: one epoch on 400 texts, live progress, then the verdict
        page.get_by_role("tab", name="3. Fine-tune").click()
        page.get_by_label("Epochs").first.fill("1")
        page.get_by_label("Epochs").first.press("Enter")
        page.get_by_role("button", name="Train", exact=True).click()
        expect(page.get_by_text("left (with evaluation and saving)")).to_be_visible(timeout=180_000)
        page.screenshot(path=str(ARTIFACTS / "app-3-training.png"))
        expect(page.get_by_text("Finished", exact=True)).to_be_visible(timeout=600_000)
        page.screenshot(path=str(ARTIFACTS / "app-3-finished.png"))
        finished = [p for p in runs.iterdir() if p.is_dir() and (p / "report.json").exists()]
        assert len(finished) == 1, "the run lands in the clone's saved_adapters/"

        # 4. Compare the run just trained (preselected), then a live prediction on Enter
        page.get_by_role("tab", name="4. Compare").click()
        page.get_by_role("button", name="Compare", exact=True).first.click()
        expect(page.locator("#compare-verdict")).to_contain_text("Fine-tuning improved", timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "app-4-compare.png"))
        text = page.get_by_label("Text", exact=True)
        text.fill("The striker scored twice as the team won the cup final")
        text.press("Enter")
        expect(page.get_by_text("ms for both models")).to_be_visible(timeout=120_000)
        text.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "app-4-predict.png"))
        assert page.locator("[data-testid='label-output-value']").count() >= 2, "both models' predictions are shown"

        # Stop: a default run (all of bbc-news, 2 epochs), stopped once it trains
        page.get_by_role("tab", name="1. Model & data").click()
        page.get_by_label("Train subset (texts)").fill("")
        page.get_by_role("tab", name="3. Fine-tune").click()
        page.get_by_label("Epochs").first.fill("2")
        page.get_by_label("Epochs").first.press("Enter")
        page.get_by_role("button", name="Train", exact=True).click()
        expect(page.get_by_text("training: step", exact=False)).to_be_visible(timeout=180_000)
        page.get_by_role("button", name="Stop").click()
        expect(page.get_by_text("Stopped", exact=True)).to_be_visible(timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "app-3-stopped.png"))
        browser.close()
    statuses = sorted(json.loads((p / "status.json").read_text())["status"] for p in runs.iterdir() if p.is_dir()
                      and not p.name.startswith("."))
    assert statuses == ["complete", "stopped"], statuses
