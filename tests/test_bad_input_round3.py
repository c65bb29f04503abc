"""Bad input, round three (issue 21): each case of the independent matrix that was BAD or misleadingly ROUGH, as a
user meets it. Bad input is one line before heavy work and nothing a user had is lost; odd but valid input is
handled and said out loud."""

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pandas as pd
import pytest

from test_cli import assert_one_line_error, in_process

from lft_core import LftError, RunConfig, load_data, run

REPO = Path(__file__).resolve().parents[1]


def one_line_error(code, err, *fragments) -> str:
    """test_cli's check of a one-line error, returning that line."""
    assert_one_line_error(code, err, *fragments)
    return next(line for line in err.splitlines() if line.startswith("error:"))


@pytest.fixture
def good_csv(tmp_path) -> Path:
    from conftest import keyword_frame

    path = tmp_path / "good.csv"
    keyword_frame(40).to_csv(path, index=False)
    return path


def tiny_run(model, dataset, out, *extra) -> list[str]:
    return ["run", "--model", model, "--dataset", str(dataset), "--max-length", "32", "--epochs", "1",
            "--output", str(out), *extra]


# ---------------------------------------------------------------- 1. --overwrite never deletes a user's files


def test_overwrite_refuses_a_folder_that_is_not_a_run_and_names_what_it_holds(tiny_models, good_csv, tmp_path,
                                                                               capsys):
    mine = tmp_path / "my-experiment"
    (mine / "checkpoints").mkdir(parents=True)
    (mine / "checkpoints" / "model-epoch9.pt").write_bytes(b"nine epochs of work")
    (mine / "events.jsonl").write_text('{"mine": true}\n')
    code, out, err = in_process(tiny_run(tiny_models["bert"], good_csv, mine, "--overwrite"), capsys)
    line = one_line_error(code, err, "not a run folder", "checkpoints/", "events.jsonl")
    assert "--overwrite only replaces what a run wrote" in line
    assert (mine / "checkpoints" / "model-epoch9.pt").read_bytes() == b"nine epochs of work"
    assert (mine / "events.jsonl").read_text() == '{"mine": true}\n'
    assert sorted(p.name for p in mine.iterdir()) == ["checkpoints", "events.jsonl"]


def test_overwrite_of_the_runs_folder_itself_is_refused(tiny_models, good_csv, tmp_path, capsys):
    from lft_core.runs import adapters_root

    root = adapters_root()
    (root / "an-old-run").mkdir(parents=True)
    (root / "an-old-run" / "status.json").write_text(json.dumps({"status": "complete"}))
    for output in (root, root.parent):
        code, out, err = in_process(tiny_run(tiny_models["bert"], good_csv, output, "--overwrite"), capsys)
        one_line_error(code, err, "which holds every run")
    assert (root / "an-old-run" / "status.json").exists() and not (root / "status.json").exists()


def test_overwrite_of_a_run_folder_is_still_allowed_and_a_lookalike_is_not(tmp_path):
    from lft_core.runs import check_output

    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "status.json").write_text(json.dumps({"status": "failed"}))
    check_output(str(run_dir), overwrite=True)  # only what reserving writes: ours
    (run_dir / "checkpoints" / "run_config.json").write_text("{}")
    (run_dir / "notes.txt").write_text("mine")
    check_output(str(run_dir), overwrite=True)  # a run's config: ours, and notes.txt is never touched by a run
    other = tmp_path / "other-tool"
    other.mkdir()
    (other / "status.json").write_text(json.dumps({"status": "complete"}))
    (other / "weights.bin").write_bytes(b"not ours")
    with pytest.raises(LftError, match="not a run folder of lft_core.*status.json, weights.bin"):
        check_output(str(other), overwrite=True)


# ---------------------------------------------------------------- 2. a reference that cannot be computed is skipped


def _dataset(train_texts, test_texts):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    features = Features({"text": Value("string"), "label": ClassLabel(names=["a", "b"])})
    make = lambda texts: Dataset.from_dict({"text": texts, "label": [i % 2 for i in range(len(texts))]}, features)
    return DatasetDict(train=make(train_texts), validation=make(test_texts), test=make(test_texts))


@pytest.mark.parametrize("train, why", [
    (["alpha beta", "gamma delta"], "no word appears in two or more of the 2 training texts"),  # --max-train-samples 2
    (["\U0001F600\U0001F600", "\U0001F622", "\U0001F600", "\U0001F622\U0001F622"], "only emoji"),
    (["1", "2", "3", "4"], "no words of two or more letters or digits"),  # an integer text column
])
def test_tfidf_reference_says_why_it_cannot_be_computed(train, why):
    from lft_core.baselines import ReferenceUnavailable, tfidf_logreg

    with pytest.raises(ReferenceUnavailable, match=why):
        tfidf_logreg(_dataset(train, train))


def _emoji_frame(n_per_class=30, seed=0):
    import random

    rng = random.Random(seed)
    marks = {"happy": "\U0001F600\U0001F389\U0001F973", "sad": "\U0001F622\U0001F62D\U0001F494",
             "food": "\U0001F35E\U0001F9C0\U0001F34E"}
    rows = [{"text": "".join(rng.choices(m, k=4)), "label": label} for label, m in marks.items()
            for _ in range(n_per_class)]
    rng.shuffle(rows)
    return pd.DataFrame(rows)


def test_emoji_only_texts_train_warn_about_unknown_tokens_and_skip_tfidf(tiny_models, tmp_path, caplog):
    from lft_core.report import read_report

    path = tmp_path / "emoji.parquet"
    _emoji_frame().to_parquet(path)
    out = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="lft_core"):
        result = run(RunConfig(model=tiny_models["bert"], dataset=str(path), epochs=1, max_length=16,
                               output=str(out)))
    assert json.loads((out / "status.json").read_text())["status"] == "complete"
    # 5. the unknown token, by share and name
    assert "of the tokens are the unknown token '[UNK]'" in caplog.text
    # 2. skipped, and said in the report and the verdict
    report = read_report(out)
    assert "tfidf" not in report.references and "only emoji" in report.skipped_references["tfidf"]
    assert any(d.startswith("No TF-IDF + logistic regression reference: skipped because") for d in report.verdict.details)
    assert "skipped because" in (out / "report.md").read_text()
    assert result.report.skipped_references == report.skipped_references


def test_health_check_warns_about_unknown_tokens(tiny_models, tmp_path):
    from lft_core.health import check_dataset
    from lft_core.models import tokenizer_for

    path = tmp_path / "emoji.csv"
    _emoji_frame().to_csv(path, index=False)
    health = check_dataset(RunConfig(model=tiny_models["bert"], dataset=str(path)), tokenizer_for(tiny_models["bert"]))
    assert any("unknown token '[UNK]'" in w for w in health.warnings), health.warnings


def test_unknown_token_warning_stays_quiet_on_words(tiny_models):
    from conftest import keyword_frame
    from lft_core.evaluate import encode
    from lft_core.models import tokenizer_for, unknown_token_warning

    tokenizer = tokenizer_for(tiny_models["bert"])
    texts = keyword_frame(5)["text"].tolist()
    ids, _ = encode(tokenizer, texts, 32)
    assert unknown_token_warning(tokenizer, ids, "train", texts) is None


# ---------------------------------------------------------------- 3. a full disk at the first checkpoint


def test_safetensors_disk_full_at_a_checkpoint_is_one_line_and_leaves_no_half_checkpoint(tiny_models, good_csv,
                                                                                          tmp_path, monkeypatch):
    from safetensors import SafetensorError
    from transformers import Trainer

    def full_disk(self, output_dir=None, state_dict=None):
        folder = Path(output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "adapter_model.safetensors").write_bytes(b"half")
        # what safetensors' Rust writer raises when the disk fills: not an OSError
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(Trainer, "_save", full_disk)
    out = tmp_path / "run"
    cfg = RunConfig(model=tiny_models["bert"], dataset=str(good_csv), epochs=2, max_length=32, batch_size=4,
                    save_steps=5, output=str(out))
    with pytest.raises(LftError, match="the disk is full while writing a checkpoint.*no checkpoint had been saved yet"):
        run(cfg)
    assert json.loads((out / "status.json").read_text())["status"] == "failed"
    assert not list((out / "checkpoints").glob("checkpoint-*"))


def test_disk_full_is_recognised_through_wrappers():
    import errno

    from lft_core.train import is_disk_full

    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos; "
                                     "PytorchStreamWriter failed writing file data/0: No space left on device"))
    try:
        try:
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
        except OSError as inner:
            raise RuntimeError("saving failed") from inner
    except RuntimeError as outer:
        assert is_disk_full(outer)
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))


# ---------------------------------------------------------------- 4. labels written differently


def _numeric_spellings_csv(tmp_path) -> Path:
    from conftest import keyword_frame

    frame = keyword_frame(30)
    frame["label"] = frame["label"].map({"sport": "01", "tech": "1", "food": "1.0"})
    path = tmp_path / "spellings.csv"
    frame.to_csv(path, index=False)
    return path


def test_label_spellings_of_one_number_are_merged_out_loud(tmp_path, caplog):
    path = _numeric_spellings_csv(tmp_path)
    with caplog.at_level(logging.WARNING, logger="lft_core"):
        with pytest.raises(LftError, match="single class"):  # merged, the three topics leave one class
            load_data(RunConfig(dataset=str(path)))
    assert "'01', '1', '1.0' -> '1'" in caplog.text and "--keep-label-spellings" in caplog.text


def test_keep_label_spellings_keeps_them_apart(tmp_path):
    path = _numeric_spellings_csv(tmp_path)
    data = load_data(RunConfig(dataset=str(path), keep_label_spellings=True))
    assert data["train"].features["label"].names == ["01", "1", "1.0"]
    raw = pd.read_csv(path, dtype=str)
    counts = pd.Series(data["train"].features["label"].int2str(
        list(data["train"]["label"]) + list(data["validation"]["label"]) + list(data["test"]["label"]))).value_counts()
    assert counts.to_dict() == raw["label"].value_counts().to_dict()


def test_keep_label_spellings_is_a_cli_flag(tmp_path, capsys):
    from lft_core.cli import build_parser

    args = build_parser().parse_args(["run", "--keep-label-spellings"])
    assert args.keep_label_spellings is True


def test_true_false_labels_keep_their_names(tmp_path):
    from conftest import keyword_frame

    frame = keyword_frame(30)
    frame = frame[frame.label != "food"].assign(label=lambda f: f.label == "sport")
    for suffix in ("csv", "jsonl"):
        path = tmp_path / f"bools.{suffix}"
        frame.to_csv(path, index=False) if suffix == "csv" else frame.to_json(path, orient="records", lines=True)
        assert load_data(RunConfig(dataset=str(path)))["train"].features["label"].names == ["False", "True"]


# ---------------------------------------------------------------- 6. a column chosen among several


def test_run_says_which_text_column_it_used_and_which_it_ignored(tmp_path, caplog):
    from conftest import keyword_frame

    frame = keyword_frame(20)
    # question and passage are a standard sentence pair (issue 22): both are read, none ignored
    pair = pd.DataFrame({"question": frame["text"], "passage": frame["text"].str.upper() + " and more words",
                         "label": frame["label"]})
    pair.to_csv(tmp_path / "qa.csv", index=False)
    data = load_data(RunConfig(dataset=str(tmp_path / "qa.csv")))
    assert "text_pair" in data["train"].column_names
    # two prose columns that are no pair: the rule's choice is said, with the column it leaves out
    notes = pd.DataFrame({"question": frame["text"], "notes": frame["text"].str.upper() + " and more words",
                          "label": frame["label"]})
    path = tmp_path / "notes.csv"
    notes.to_csv(path, index=False)
    with caplog.at_level(logging.WARNING, logger="lft_core"):
        load_data(RunConfig(dataset=str(path)))
    assert "using column 'question' as the text (its name is a usual name for texts) and ignoring 'notes'" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lft_core"):
        load_data(RunConfig(dataset=str(path), text_column="notes"))  # chosen by the user: nothing to say
    assert "ignoring" not in caplog.text


def test_an_id_column_is_not_text_that_was_ignored(tmp_path, caplog):
    from conftest import keyword_frame

    frame = keyword_frame(20)
    frame.insert(0, "id", [f"row-{i:04d}" for i in range(len(frame))])
    path = tmp_path / "ids.csv"
    frame.to_csv(path, index=False)
    with caplog.at_level(logging.WARNING, logger="lft_core"):
        load_data(RunConfig(dataset=str(path)))
    assert "ignoring" not in caplog.text


@pytest.fixture(scope="module")
def trained_run(tiny_models, tmp_path_factory):
    from conftest import keyword_frame

    folder = tmp_path_factory.mktemp("trained")
    path = folder / "train.csv"
    keyword_frame(40).to_csv(path, index=False)
    out = folder / "run"
    run(RunConfig(model=tiny_models["bert"], dataset=str(path), epochs=1, max_length=32, output=str(out),
                  tfidf_reference=False))
    return out


def test_predict_says_which_column_it_labelled_and_which_it_ignored(trained_run, tmp_path, caplog):
    from lft_core.predict import predict_stream

    path = tmp_path / "news.csv"
    pd.DataFrame({"id": range(40), "headline": ["match win for the team"] * 40,
                  "article": ["the coach said the team will win the cup this season"] * 40}).to_csv(path, index=False)
    with caplog.at_level(logging.WARNING, logger="lft_core"):
        frames = list(predict_stream(str(trained_run), str(path), batch_size=2))  # 32 rows a chunk: 2 chunks
    assert sum(len(f) for f in frames) == 40
    warned = [r.getMessage() for r in caplog.records if "ignoring" in r.getMessage()]
    assert len(warned) == 1 and "using column 'headline'" in warned[0] and "'article'" in warned[0]


# ---------------------------------------------------------------- 7. misleading ROUGHs


def test_a_run_killed_while_running_reads_as_interrupted_and_says_so_on_disk(tmp_path):
    from lft_core.runs import list_runs

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=60)
    run_dir = tmp_path / "killed"
    run_dir.mkdir()
    (run_dir / "status.json").write_text(json.dumps({"status": "running", "pid": dead.pid, "updated": 1.0}))
    assert [r.status for r in list_runs(tmp_path)] == ["interrupted"]
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "interrupted" and f"pid {dead.pid}" in status["message"]


def test_runs_command_lists_and_removes_runs(tmp_path, capsys):
    from lft_core.runs import adapters_root

    root = adapters_root()
    for name, status in (("done", "complete"), ("gone", "stopped")):
        (root / name).mkdir(parents=True)
        (root / name / "status.json").write_text(json.dumps({"status": status, "updated": 1.0}))
    code, out, err = in_process(["runs"], capsys)
    assert code == 0 and "gone" in out and "stopped" in out and "done" in out
    code, out, err = in_process(["runs", "rm", "gone"], capsys)
    assert code == 0 and "removed" in out and not (root / "gone").exists() and (root / "done").exists()
    code, out, err = in_process(["runs", "rm", "../elsewhere"], capsys)
    one_line_error(code, err, "is not a folder directly inside")


def test_resume_refuses_settings_it_would_ignore(tmp_path, capsys):
    run_dir = tmp_path / "stopped"
    run_dir.mkdir()
    (run_dir / "status.json").write_text(json.dumps({"status": "stopped"}))
    code, out, err = in_process(["run", "--resume", str(run_dir), "--epochs", "3", "--learning-rate", "0.5"], capsys)
    one_line_error(code, err, "--epochs, --learning-rate would be ignored")


@pytest.mark.parametrize("length", ["1", "7"])
def test_max_length_below_the_minimum_is_refused(length, tmp_path, capsys):
    # a dataset that does not exist: were max_length not checked first, the run would stop there, not train
    code, out, err = in_process(["run", "--max-length", length, "--dataset", str(tmp_path / "none.csv"), "--output",
                                 str(tmp_path / "r")], capsys)
    one_line_error(code, err, "max_length must be at least 8 tokens")
    assert not (tmp_path / "r").exists()


def test_a_yaml_key_given_twice_is_refused_by_name(tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text(f"epochs: 1\ndataset: {tmp_path / 'none.csv'}\nepochs: 5\n")
    code, out, err = in_process(["run", "--config", str(path)], capsys)
    one_line_error(code, err, "key 'epochs' is given twice (lines 1 and 3)")


def test_a_thousand_tiny_classes_give_short_warnings_and_a_clear_one(tmp_path, caplog):
    rows = [{"text": f"text number {c} variant {k}", "label": f"class-{c:04d}"} for c in range(1000) for k in range(3)]
    path = tmp_path / "many.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    with caplog.at_level(logging.WARNING, logger="lft_core"):
        load_data(RunConfig(dataset=str(path)))
    messages = [r.getMessage() for r in caplog.records]
    assert messages and max(len(m) for m in messages) < 600, max(messages, key=len)
    assert any("more" in m and "class-" in m for m in messages)
    assert any("classes have fewer than 5 training examples" in m and "expect accuracy near chance" in m
               for m in messages)


def test_predict_clips_a_huge_line_before_tokenizing(trained_run, tmp_path, monkeypatch):
    from lft_core import predict as predict_module

    seen = []
    real = predict_module.predict_logits

    def spy(model, tokenizer, texts, *args, **kwargs):
        seen.extend(len(t) for t in texts)
        return real(model, tokenizer, texts, *args, **kwargs)

    monkeypatch.setattr(predict_module, "predict_logits", spy)
    path = tmp_path / "huge.txt"
    path.write_text("goal match team " * 125_000 + "\nsoftware chip\n")  # a 2 MB line
    frame = pd.concat(predict_module.predict_stream(str(trained_run), str(path)))
    assert len(frame) == 2 and max(seen) <= 32 * predict_module.CHARS_PER_TOKEN
    # the clipped text labels as the whole would: the kept tokens are the same
    from lft_core.predict import Predictor, clip_text

    predictor = Predictor(trained_run)
    whole = "goal match team " * 200
    assert predictor.predict([clip_text(whole, 32)]).label[0] == predictor.predict([whole]).label[0]


def test_clip_text_keeps_the_end_for_tail_truncation():
    from lft_core.predict import clip_text

    text = "a" * 10_000 + "END"
    assert clip_text(text, 8, "tail").endswith("END") and len(clip_text(text, 8, "tail")) == 8 * 32
    assert clip_text(text, 8, "head+tail").startswith("a") and clip_text(text, 8, "head+tail").endswith("END")
    assert clip_text("short", 8) == "short"


def test_a_broken_jsonl_line_is_named_by_its_line(tmp_path):
    lines = [json.dumps({"text": f"text {i} goal", "label": "a" if i % 2 else "b"}) for i in range(60)]
    lines[51] = '{"text": "broken, "label": "a"}'
    path = tmp_path / "broken.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(LftError, match="not valid JSON Lines at line 52, column "):
        load_data(RunConfig(dataset=str(path)))


def test_predict_names_the_broken_jsonl_line(trained_run, tmp_path):
    from lft_core.predict import predict_stream

    lines = [json.dumps({"text": f"goal match {i}"}) for i in range(60)]
    lines[51] = '{"text": "broken}'
    path = tmp_path / "broken.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(LftError, match="not valid JSON Lines at line 52, column "):
        list(predict_stream(str(trained_run), str(path)))


def test_split_files_with_different_columns_are_named(tmp_path):
    from conftest import keyword_frame

    folder = tmp_path / "splits"
    folder.mkdir()
    keyword_frame(20).to_csv(folder / "train.csv", index=False)
    keyword_frame(5, seed=3).rename(columns={"text": "review"}).to_csv(folder / "test.csv", index=False)
    with pytest.raises(LftError) as caught:
        load_data(RunConfig(dataset=str(folder)))
    message = str(caught.value)
    assert "Couldn't cast" not in message
    assert "test split lacks column(s) text" in message and "review" in message


def test_reading_a_local_file_leaves_no_copy_in_the_datasets_cache(tmp_path, good_csv, monkeypatch):
    import datasets.config

    cache = tmp_path / "hf-datasets"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    before = set(Path("/tmp").glob("lft-read-*"))
    data = load_data(RunConfig(dataset=str(good_csv)))
    assert sum(len(data[s]) for s in data) == 120
    left = [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else []
    assert left == []
    assert set(Path("/tmp").glob("lft-read-*")) <= before


# ---------------------------------------------------------------- 8. first use of the built-in decoder


CONVERT = textwrap.dedent("""
    import logging, os, sys, threading, time
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from lft_core.models import resolve_model
    ready, go = sys.argv[1], sys.argv[2]
    open(ready, "w").close()
    deadline = time.monotonic() + 300
    while not os.path.exists(go):  # both processes start converting together
        if time.monotonic() > deadline:
            sys.exit("no go signal")
        time.sleep(0.05)
    found, errors = [], []
    def convert():
        try:
            found.append(resolve_model("smollm2-135m"))
        except Exception as exc:
            errors.append(repr(exc))
    threads = [threading.Thread(target=convert) for _ in range(2)]
    [t.start() for t in threads]
    [t.join(timeout=900) for t in threads]
    print("PATHS", sorted(set(found)), "ERRORS", errors)
    sys.exit(1 if errors or len(found) != 2 else 0)
""")


@pytest.mark.slow
def test_the_built_in_decoder_converts_once_for_concurrent_first_users(tmp_path):
    from safetensors import safe_open
    from transformers import AutoConfig

    cache = tmp_path / "lft-cache"
    env = {**os.environ, "PYTHONPATH": str(REPO), "LFT_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", CONVERT, str(tmp_path / f"ready{i}"), str(go)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    try:
        for i in range(2):  # both imported and waiting
            ready = tmp_path / f"ready{i}"
            for _ in range(6000):
                if ready.exists() or procs[i].poll() is not None:
                    break
                threading.Event().wait(0.05)
        go.touch()
        results = [p.communicate(timeout=900) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    target = cache / "models" / "smollm2-135m"
    for proc, (out, err) in zip(procs, results):
        assert proc.returncode == 0, (out, err[-3000:])
        assert f"PATHS ['{target}']" in out
    conversions = sum(err.count("converting ") for _, err in results)
    assert conversions == 1, [err[-2000:] for _, err in results]
    assert AutoConfig.from_pretrained(target).model_type == "llama"
    with safe_open(target / "model.safetensors", "pt") as weights:
        assert len(list(weights.keys())) > 100
    assert sorted(p.name for p in target.parent.iterdir()) == ["smollm2-135m", "smollm2-135m.lock"]


def test_conversion_runs_once_for_threads_and_leaves_no_temp_folder(tmp_path, monkeypatch):
    """The lock and the private temp folder, without the minute a real conversion takes."""
    from lft_core import models

    monkeypatch.setenv("LFT_CACHE", str(tmp_path / "cache"))
    calls, started = [], threading.Barrier(4, timeout=60)

    def convert(folder: Path) -> None:
        calls.append(folder)
        (folder / "model.safetensors").write_bytes(b"weights")
        (folder / "config.json").write_text("{}")

    def first_use():
        started.wait()
        found.append(models._converted("fake-model", convert))

    found = []
    threads = [threading.Thread(target=first_use) for _ in range(4)]
    [t.start() for t in threads]
    [t.join(timeout=60) for t in threads]
    target = tmp_path / "cache" / "models" / "fake-model"
    assert len(calls) == 1 and found == [target] * 4
    assert sorted(p.name for p in target.parent.iterdir()) == ["fake-model", "fake-model.lock"]


def test_a_failed_conversion_leaves_nothing_half_done(tmp_path, monkeypatch):
    from lft_core import models

    monkeypatch.setenv("LFT_CACHE", str(tmp_path / "cache"))

    def broken(folder: Path) -> None:
        (folder / "config.json").write_text("{}")
        raise OSError("I/O error: No such file or directory")

    with pytest.raises(OSError):
        models._converted("fake-model", broken)
    assert sorted(p.name for p in (tmp_path / "cache" / "models").iterdir()) == ["fake-model.lock"]
