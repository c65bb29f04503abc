"""The CLI as a user meets it: bad input is one line on stderr with exit code 2, no traceback, no output folder."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


def cli(*args, stdin=None, env_extra=None, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "lft_core", *args], capture_output=True, text=True, input=stdin,
                          env=env, cwd=cwd or REPO, timeout=600)


def assert_one_line_error(out, *fragments):
    assert out.returncode == 2, (out.returncode, out.stderr[-3000:])
    lines = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, out.stderr
    assert "Traceback" not in out.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def out_dir(tmp_path):
    return tmp_path / "out"


def bad_cases(tmp_path, keyword_csv, tiny_models):
    """(flags, expected message fragment): the bad-input matrix."""
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(bytes(range(256)) * 50)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,label\ncaf\xe9,a\nna\xefve,b\n".encode("latin-1") * 10)
    corrupt = tmp_path / "corrupt.csv"
    corrupt.write_text('text,label\n"never closed,a\nx,y,z,w\n')
    nan_labels = tmp_path / "nan.csv"
    pd.DataFrame({"text": [f"t {i}" for i in range(20)], "label": ["a", "b"] * 9 + [None, None]}).to_csv(nan_labels, index=False)
    one_class = tmp_path / "one.csv"
    pd.DataFrame({"text": [f"t {i}" for i in range(20)], "label": ["a"] * 20}).to_csv(one_class, index=False)
    unknown_key = tmp_path / "typo.yaml"
    unknown_key.write_text("learning_rat: 0.001\n")
    return [
        (["--model", "no-such-model!"], "not a built-in model (minilm, smollm2-135m)"),
        (["--dataset", "nope nope"], "bbc-news"),
        (["--dataset", str(tmp_path / "missing.csv")], "not an existing file"),
        (["--dataset", str(garbage)], ""),
        (["--dataset", str(latin)], "not UTF-8"),
        (["--dataset", str(corrupt)], "could not read"),
        (["--dataset", str(nan_labels)], "have no label"),
        (["--dataset", str(one_class)], "single class"),
        (["--dataset", keyword_csv, "--text-column", "body"], "'body' is not a column"),
        (["--dataset", keyword_csv, "--method", "lorax"], "unknown method"),
        (["--dataset", keyword_csv, "--epochs", "0"], "epochs must be > 0"),
        (["--dataset", keyword_csv, "--learning-rate", "-0.1"], "learning_rate must be > 0"),
        (["--dataset", keyword_csv, "--method-param", "r=0"], "method_params.r"),
        (["--config", str(unknown_key)], "did you mean 'learning_rate'"),
        (["--config", str(tmp_path / "none.yaml")], "does not exist"),
        (["--dataset", keyword_csv, "--model", tiny_models["gpt2"], "--method", "loha"], "cannot be applied"),
    ]


def test_bad_input_matrix(tmp_path, keyword_csv, tiny_models, capsys):
    """Each case through the CLI's own entry point (in-process, for speed): exit 2, one line, nothing written."""
    from lft_core.cli import main

    for flags, fragment in bad_cases(tmp_path, keyword_csv, tiny_models):
        out_dir = tmp_path / "never-written"
        code = main(["run", *flags, "--output", str(out_dir), "--max-length", "32"])
        err = capsys.readouterr().err
        assert_one_line_error(subprocess.CompletedProcess([], code, "", err), fragment)
        assert not out_dir.exists(), flags


def test_bad_input_as_a_subprocess(tmp_path):
    out = cli("run", "--dataset", str(tmp_path / "missing.csv"), "--output", str(tmp_path / "o"))
    assert_one_line_error(out, "not an existing file")
    assert not (tmp_path / "o").exists()


def test_hub_model_name_offline_fails_fast(tmp_path, keyword_csv):
    out = cli("run", "--model", "distilbert-base-uncased", "--dataset", keyword_csv, "--output", str(tmp_path / "o"),
              env_extra={"HF_HUB_OFFLINE": "0"})
    assert_one_line_error(out, "offline", "minilm")


def test_non_empty_output_refused(tmp_path, keyword_csv):
    target = tmp_path / "existing"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    out = cli("run", "--dataset", keyword_csv, "--output", str(target))
    assert_one_line_error(out, "--overwrite")
    assert [p.name for p in target.iterdir()] == ["keep.txt"]


def test_run_then_predict(tmp_path, keyword_csv):
    run_dir = tmp_path / "run"
    # about 50 steps in all: a learning rate above LoRA's default (1e-3, chosen for runs of hundreds of steps) makes
    # the model confident enough for the probability check below
    out = cli("run", "--dataset", keyword_csv, "--epochs", "3", "--max-length", "32", "--output", str(run_dir),
              "--learning-rate", "4e-3")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "fine-tuned" in out.stdout and "Fine-tuning improved" in out.stdout and "saved:" in out.stdout
    texts = tmp_path / "new.jsonl"
    texts.write_text("\n".join(json.dumps({"text": t}) for t in ["goal match team win", "software chip code data"]))
    pred = cli("predict", "--adapter", str(run_dir), "--input", str(texts))
    assert pred.returncode == 0, pred.stderr[-2000:]
    rows = pd.read_csv(__import__("io").StringIO(pred.stdout))
    assert rows.label.tolist() == ["sport", "tech"] and (rows.probability > 0.5).all()
    stdin = cli("predict", "--adapter", str(run_dir), "--input", "-", stdin="bread cheese soup\n")
    assert stdin.returncode == 0 and "food" in stdin.stdout


def test_predict_on_incomplete_adapter(tmp_path, keyword_csv):
    folder = tmp_path / "half"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    out = cli("predict", "--adapter", str(folder), "--input", "-", stdin="x\n")
    assert_one_line_error(out, "missing adapter_model.safetensors")


def test_list_commands():
    out = cli("methods")
    assert out.returncode == 0 and "lora" in out.stdout and "prefix-tuning" in out.stdout
    assert "bbc-news" in cli("datasets").stdout and "minilm" in cli("models").stdout


def test_adapter_from_a_different_base_model(tmp_path, keyword_csv, tiny_models, capsys):
    """An adapter whose config points at another base (other shapes) is one clear line, not a traceback."""
    import shutil

    from lft_core import RunConfig, run
    from lft_core.cli import main

    result = run(RunConfig(model=tiny_models["bert"], dataset=keyword_csv, epochs=1, max_length=32,
                           output=str(tmp_path / "run")))
    config_path = result.run_dir / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = tiny_models["llama"]  # a different architecture and size
    config_path.write_text(json.dumps(config))
    code = main(["predict", "--adapter", str(result.run_dir), "--input", str(keyword_csv)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and err.startswith("error:"), err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1


def test_long_texts_are_truncated_with_one_warning(tmp_path, tiny_models, caplog):
    from lft_core import RunConfig, run

    frame = pd.DataFrame({"text": [("goal match team " * 200) if i % 2 else ("bread soup cheese " * 200)
                                   for i in range(40)], "label": ["sport" if i % 2 else "food" for i in range(40)]})
    path = tmp_path / "long.csv"
    frame.to_csv(path, index=False)
    run(RunConfig(model=tiny_models["bert"], dataset=str(path), epochs=1, max_length=32, output=str(tmp_path / "r")))
    warnings = [r for r in caplog.records if "longer than max_length" in r.getMessage()]
    assert len(warnings) == 1 and "are truncated" in warnings[0].getMessage()
