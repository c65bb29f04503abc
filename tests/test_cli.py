"""The CLI as a user meets it. Bad input is one line on stderr naming the problem, exit code 2, no traceback, and
nothing left behind or lost; odd but valid input is handled and said out loud. One case per row."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from lft_core import RunConfig, run

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--max-train-samples", "200", "--max-eval-samples", "100", "--epochs", "1", "--max-length", "32"]


def cli(*args, stdin=None, env_extra=None, cwd=None, timeout=600):
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "lft_core", *args], capture_output=True, input=stdin, env=env,
                          cwd=cwd or REPO, timeout=timeout, text=not isinstance(stdin, bytes))


def in_process(argv, capsys) -> tuple[int, str, str]:
    from lft_core.cli import main

    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_line_error(code, err, *fragments):
    err = err if isinstance(err, str) else err.decode()
    assert code == 2, (code, err[-3000:])
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "usage:" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The odd files of the matrix, made once."""
    from conftest import keyword_frame

    folder = tmp_path_factory.mktemp("inputs")
    paths = {"good": folder / "good.csv", "header": folder / "header.csv", "blank": folder / "blank.csv",
             "garbage": folder / "garbage.csv", "latin": folder / "latin.csv", "corrupt": folder / "corrupt.csv",
             "nan": folder / "nan.csv", "one": folder / "one.csv", "typo": folder / "typo.yaml",
             "epochs_two": folder / "two.yaml", "lists": folder / "lists.parquet", "scalar_grid": folder / "grid.yaml",
             "bad_method_sweep": folder / "sweep.yaml"}
    keyword_frame(40).to_csv(paths["good"], index=False)
    paths["header"].write_text("text,label\n")
    pd.DataFrame({"text": ["", "  "] * 10, "label": ["a", "b"] * 10}).to_csv(paths["blank"], index=False)
    paths["garbage"].write_bytes(bytes(range(256)) * 50)
    paths["latin"].write_bytes("text,label\ncaf\xe9,a\nna\xefve,b\n".encode("latin-1") * 10)
    paths["corrupt"].write_text('text,label\n"never closed,a\nx,y,z,w\n')
    pd.DataFrame({"text": [f"t {i}" for i in range(20)], "label": ["a", "b"] * 9 + [None, None]}).to_csv(paths["nan"], index=False)
    pd.DataFrame({"text": [f"t {i}" for i in range(20)], "label": ["a"] * 20}).to_csv(paths["one"], index=False)
    paths["typo"].write_text("learning_rat: 0.001\n")
    paths["epochs_two"].write_text("epochs: two\n")
    pd.DataFrame({"text": [f"t{i}" for i in range(20)], "label": [["a", "b"], ["c"]] * 10}).to_parquet(paths["lists"])
    paths["scalar_grid"].write_text(f"base: {{dataset: {paths['good']}}}\ngrid: {{method: lora}}\n")
    paths["bad_method_sweep"].write_text(f"base: {{dataset: {paths['good']}}}\nruns: [{{method: lora}}, {{method: lorax}}]\n")
    return {k: str(v) for k, v in paths.items()}


@pytest.fixture(scope="module")
def tiny_trained(tmp_path_factory, tiny_models, keyword_csv):
    """A finished tiny run for the predict cases (copied per test when a case damages it)."""
    result = run(RunConfig(model=tiny_models["bert"], dataset=keyword_csv, epochs=1, max_length=32,
                           output=str(tmp_path_factory.mktemp("tiny") / "run")))
    return result.run_dir


@pytest.fixture(scope="module")
def trained(tmp_path_factory, keyword_csv):
    """The embedded model, trained on the keyword task well enough to predict it."""
    # about 45 steps: a learning rate above LoRA's default (chosen for runs of hundreds of steps) makes the model
    # confident enough for the probability check
    result = run(RunConfig(dataset=keyword_csv, epochs=3, max_length=32, learning_rate=4e-3,
                           output=str(tmp_path_factory.mktemp("trained") / "run")))
    return result.run_dir


# (case id, argv with {placeholders}, expected fragment of the one error line)
RUN_ERRORS = [
    ("unknown-model", ["--model", "no-such-model!"], "not a built-in model (minilm, smollm2-135m)"),
    ("unknown-dataset", ["--dataset", "nope nope"], "bbc-news"),
    ("missing-file", ["--dataset", "{tmp}/missing.csv"], "not an existing file"),
    ("garbage-file", ["--dataset", "{garbage}"], "could not read"),
    ("latin-1-file", ["--dataset", "{latin}"], "not UTF-8"),
    ("corrupt-csv", ["--dataset", "{corrupt}"], "could not read"),
    ("nan-labels", ["--dataset", "{nan}"], "have no label"),
    ("one-class", ["--dataset", "{one}"], "single class"),
    ("header-only", ["--dataset", "{header}"], "has no data rows"),
    ("every-text-empty", ["--dataset", "{blank}"], "every text is empty"),
    ("dev-null", ["--dataset", "/dev/null"], "not a regular file or folder"),
    # issue 22: list labels are multi-label now; a separator that splits nothing, or a pair column that is not one
    ("separator-splits-nothing", ["--dataset", "{good}", "--label-separator", "|"], "splits no label"),
    ("pair-column-missing", ["--dataset", "{lists}", "--text-pair-column", "hypothesis"], "'hypothesis' is not a column"),
    ("wrong-column", ["--dataset", "{good}", "--text-column", "body"], "'body' is not a column"),
    ("unknown-method", ["--dataset", "{good}", "--method", "lorax"], "unknown method"),
    ("epochs-zero", ["--dataset", "{good}", "--epochs", "0"], "epochs must be > 0"),
    ("epochs-inf", ["--dataset", "{good}", "--epochs", "inf"], "epochs must be > 0 and at most 1000"),
    ("negative-lr", ["--dataset", "{good}", "--learning-rate", "-0.1"], "learning_rate must be a finite number > 0"),
    ("lr-inf", ["--dataset", "{good}", "--learning-rate", "inf"], "learning_rate must be a finite number > 0"),
    ("lr-abc", ["--dataset", "{good}", "--learning-rate", "abc"], "learning_rate must be a number (got 'abc')"),
    ("seed-negative", ["--dataset", "{good}", "--seed", "-1"], "seed must be a whole number from 0"),
    ("r-zero", ["--dataset", "{good}", "--method-param", "r=0"], "method_params.r must be at least 1"),
    ("alpha-abc", ["--dataset", "{good}", "--method-param", "lora_alpha=abc"],
     "method_params.lora_alpha must be a whole number (got 'abc')"),
    ("method-param-no-equals", ["--dataset", "{good}", "--method-param", "r16"], "must look like KEY=VALUE"),
    ("config-typo", ["--config", "{typo}"], "did you mean 'learning_rate'"),
    ("config-missing", ["--config", "{tmp}/none.yaml"], "does not exist"),
    ("config-epochs-two", ["--config", "{epochs_two}"], "epochs must be a number (got 'two')"),
    ("max-length-too-long", ["--dataset", "{good}", "--max-length", "100000"], "max_length 100000 is more than minilm takes (512"),
    ("output-not-writable", ["--dataset", "{good}", "--output", "/proc/lft-test/out"], "is not writable"),
    ("loha-on-gpt2", ["--dataset", "{good}", "--model", "{gpt2}", "--method", "loha"], "cannot be applied"),
    ("unknown-flag", ["--dataset", "{good}", "--learning-rte", "1"], "unrecognized arguments"),
    ("abbreviated-flag", ["--dataset", "{good}", "--learning-rat", "1"], "unrecognized arguments"),
]


@pytest.mark.parametrize("case, argv, fragment", RUN_ERRORS, ids=[c[0] for c in RUN_ERRORS])
def test_run_refuses_bad_input_in_one_line(case, argv, fragment, files, tiny_models, tmp_path, capsys):
    values = {**files, "tmp": str(tmp_path), "gpt2": tiny_models["gpt2"]}
    out_dir = tmp_path / "never-written"
    argv = [a.format(**values) for a in argv]
    if "--output" not in argv:
        argv += ["--output", str(out_dir)]
    code, out, err = in_process(["run", *argv], capsys)
    assert_one_line_error(code, err, fragment)
    assert not out_dir.exists(), "a refused run left a folder behind"
    assert not (tmp_path / "saved_adapters").exists()


def test_output_checked_before_any_heavy_work(files, tmp_path, capsys):
    target = tmp_path / "existing"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    start = time.time()
    code, out, err = in_process(["run", "--dataset", "bbc-news", "--output", str(target)], capsys)
    assert_one_line_error(code, err, "--overwrite")
    assert "[data]" not in out and time.time() - start < 10  # refused before loading data or a model
    assert [p.name for p in target.iterdir()] == ["keep.txt"]


# ---------------------------------------------------------------- odd but valid input: handled


@pytest.mark.parametrize("yaml_text", ["learning_rate: 1e-3\nseed: '42'\n", "learning_rate: 0.001\nsave_steps: '200'\n"])
def test_yaml_numbers_written_as_people_write_them(yaml_text, files, tiny_models, tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(yaml_text + f"model: {tiny_models['bert']}\ndataset: {files['good']}\nmax_length: 32\nepochs: 1\n")
    code, out, err = in_process(["run", "--config", str(config), "--output", str(tmp_path / "r"),
                                 "--method-param", "lora_dropout=1e-2"], capsys)
    assert code == 0, err[-2000:]
    saved = json.loads((tmp_path / "r" / "run_config.json").read_text())
    assert saved["learning_rate"] == 0.001 and saved["method_params"] == {"lora_dropout": 0.01}


def test_singleton_class_is_named_and_macro_f1_stays_honest(files, tiny_models, tmp_path, capsys, caplog):
    from conftest import keyword_frame

    frame = keyword_frame(40)
    frame = pd.concat([frame[frame.label != "tech"], frame[frame.label == "tech"].head(1)])
    path = tmp_path / "singleton.csv"
    frame.to_csv(path, index=False)
    code, out, err = in_process(["run", "--model", tiny_models["bert"], "--dataset", str(path), "--max-length", "32",
                                 "--epochs", "1", "--output", str(tmp_path / "r")], capsys)
    assert code == 0, err[-2000:]
    warned = caplog.text  # in-process, pytest's log capture holds what the CLI prints as "warning: ..."
    assert "tech (1 examples)" in warned and "absent from the test split" in warned
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    tuned = report["finetuned_metrics"]
    if "tech" in tuned["unscored_classes"]:
        assert "leaves out 'tech'" in out


def test_label_variants_are_merged_and_reported_once(files, tiny_models, tmp_path, capsys, caplog):
    from conftest import keyword_frame

    frame = keyword_frame(40)
    food = frame.index[frame.label == "food"]
    frame.loc[food[:10], "label"], frame.loc[food[10:20], "label"] = "Food", "food "
    path = tmp_path / "variants.csv"
    frame.to_csv(path, index=False)
    code, out, err = in_process(["run", "--model", tiny_models["bert"], "--dataset", str(path), "--max-length", "32",
                                 "--epochs", "1", "--output", str(tmp_path / "r")], capsys)
    assert code == 0 and "were merged" in caplog.text
    assert out.count("F1 food") == 1


# ---------------------------------------------------------------- sweeps: every run checked before anything runs


@pytest.mark.parametrize("key, fragment", [("scalar_grid", "grid.method must be a list"),
                                           ("bad_method_sweep", "unknown method 'lorax'")])
def test_sweep_config_errors(key, fragment, files, tmp_path, capsys):
    out_dir = tmp_path / "sweep"
    code, out, err = in_process(["sweep", files[key], "--output", str(out_dir)], capsys)
    assert_one_line_error(code, err, fragment)
    assert not out_dir.exists()


# ---------------------------------------------------------------- predict


PREDICT_ERRORS = [
    ("truncated-weights", "truncate", ["--input", "-"], b"x\n", "is damaged"),
    ("overwritten-weights", "overwrite", ["--input", "-"], b"x\n", "is damaged"),
    ("base-folder-gone", "unbase", ["--input", "-"], b"x\n", "no longer exists"),
    ("adapter-is-a-file", "file", ["--input", "-"], b"x\n", "is a file; pass the run folder"),
    ("incomplete-adapter", "half", ["--input", "-"], b"x\n", "missing adapter_model.safetensors"),
    ("header-only-input", None, ["--input", "{header}"], None, "no texts to predict"),
    ("empty-stdin", None, ["--input", "-"], b"", "no texts to predict in stdin"),
    ("blank-stdin", None, ["--input", "-"], b"\n  \n\n", "no texts to predict in stdin"),
    ("binary-stdin", None, ["--input", "-"], bytes(range(256)) * 4, "stdin"),
    ("batch-size-zero", None, ["--input", "-", "--batch-size", "0"], b"x\n", "--batch-size: must be a positive integer"),
    ("max-length-too-long", None, ["--input", "-", "--max-length", "100000"], b"x\n", "--max-length 100000 is more than"),
    ("missing-input", None, ["--input", "{tmp}/none.csv"], None, "does not exist"),
]


def _damage(folder: Path, how: str, tmp_path: Path) -> str:
    if how is None:
        return str(folder)
    copy = tmp_path / "adapter"
    shutil.copytree(folder, copy)
    weights = copy / "adapter_model.safetensors"
    if how == "truncate":
        weights.write_bytes(weights.read_bytes()[:-100])
    elif how == "overwrite":
        weights.write_text("this is not a safetensors file")
    elif how == "unbase":
        for name in ("adapter_config.json", "base_model.json"):
            values = json.loads((copy / name).read_text())
            values["base_model_name_or_path"] = str(tmp_path / "gone")
            (copy / name).write_text(json.dumps(values))
    elif how == "file":
        return str(weights)
    elif how == "half":
        weights.unlink()
    return str(copy)


@pytest.mark.parametrize("case, damage, argv, stdin, fragment", PREDICT_ERRORS, ids=[c[0] for c in PREDICT_ERRORS])
def test_predict_refuses_bad_input_in_one_line(case, damage, argv, stdin, fragment, tiny_trained, files, tmp_path):
    adapter = _damage(tiny_trained, damage, tmp_path)
    argv = [a.format(**files, tmp=str(tmp_path)) for a in argv]
    out = cli("predict", "--adapter", adapter, *argv, stdin=stdin if stdin is not None else b"")
    assert_one_line_error(out.returncode, out.stderr, fragment)
    assert not out.stdout.strip(), "a refused prediction printed rows"


def test_run_then_predict(trained, tmp_path):
    texts = tmp_path / "new.jsonl"
    texts.write_text("\n".join(json.dumps({"text": t}) for t in ["goal match team win", "software chip code data"]))
    pred = cli("predict", "--adapter", str(trained), "--input", str(texts))
    assert pred.returncode == 0, pred.stderr[-2000:]
    rows = pd.read_csv(__import__("io").StringIO(pred.stdout))
    assert rows.label.tolist() == ["sport", "tech"] and (rows.probability > 0.5).all()
    stdin = cli("predict", "--adapter", str(trained), "--input", "-", stdin="bread cheese soup\n")
    assert stdin.returncode == 0 and "food" in stdin.stdout


@pytest.mark.parametrize("command", ["predict --adapter {run} --input {many}", "methods"])
def test_a_closed_pipe_is_not_a_traceback(command, tiny_trained, tmp_path):
    many = tmp_path / "many.txt"
    many.write_text("goal match\n" * 3000)
    line = f"{sys.executable} -m lft_core {command.format(run=tiny_trained, many=many)} | head -2"
    out = subprocess.run(["bash", "-o", "pipefail", "-c", line], capture_output=True, text=True, cwd=REPO, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert len(out.stdout.splitlines()) == 2 and "Traceback" not in out.stderr and "Error" not in out.stderr, out.stderr


# ---------------------------------------------------------------- state that must not be lost or left misleading


def test_resume_of_a_damaged_run_config(tiny_trained, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(tiny_trained, copy)
    (copy / "status.json").write_text(json.dumps({"status": "stopped"}))
    (copy / "run_config.json").write_text('{"model": "min')
    code, out, err = in_process(["run", "--resume", str(copy)], capsys)
    assert_one_line_error(code, err, "run_config.json is damaged")


def test_overwrite_of_a_finished_run_that_then_fails_keeps_it_whole(tiny_models, files, tmp_path, capsys):
    out_dir = tmp_path / "run"
    base = ["run", "--model", tiny_models["bert"], "--dataset", files["good"], "--max-length", "32", "--output", str(out_dir)]
    assert in_process([*base, "--epochs", "1"], capsys)[0] == 0
    before = {p.name: p.read_bytes() for p in out_dir.iterdir() if p.name not in ("status.json", "events.jsonl")}
    code, out, err = in_process([*base, "--overwrite", "--method", "full", "--learning-rate", "1e12", "--epochs", "2"],
                                capsys)
    assert code == 2 and ("loss became" in err or "gradient became" in err)
    after = {p.name: p.read_bytes() for p in out_dir.iterdir() if p.name not in ("status.json", "events.jsonl")}
    assert after == before  # the finished run's files, config included, untouched
    status = json.loads((out_dir / "status.json").read_text())
    assert status["status"] == "complete" and status["last_attempt"]["status"] == "failed"
    assert "no checkpoint had been saved yet" in err or "last good checkpoint (step" in err


def test_ctrl_c_stops_at_the_next_step_with_the_real_resume_command(tiny_models, files, tmp_path):
    out_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "lft_core", "run", "--model", tiny_models["bert"], "--dataset",
                             files["good"], "--max-length", "32", "--epochs", "200", "--batch-size", "4",
                             "--output", str(out_dir)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not list((out_dir / "checkpoints").glob("checkpoint-*")):
        if (out_dir / "events.jsonl").exists() and '"progress"' in (out_dir / "events.jsonl").read_text():
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err[-2000:]
    assert f"resume with `python -m lft_core run --resume {out_dir}`" in err and "RUN_DIR" not in err
    assert "\nstopping at the next step" in err  # on its own line, not glued to a progress bar
    assert json.loads((out_dir / "status.json").read_text())["status"] == "stopped"
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["run", "predict", "sweep", "methods", "models", "datasets", "worker"])
def test_every_help_prints(command, capsys):
    """The README sends users to `run --help`; a '%' in a setting's description once made it a traceback."""
    code, out, err = in_process([command, "--help"], capsys)
    assert code == 0 and "usage:" in out and not err, err
