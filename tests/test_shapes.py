"""Text-classification shapes beyond one text and one label: sentence pairs end to end (data, encoding, training,
the report, the run folder, predict, live prediction), and run folders saved before shapes existed."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from lft_core import LftError, RunConfig, load_data

FIXTURE_RUN = Path(__file__).parent / "fixtures" / "run-2dc49eb"

# ---------------------------------------------------------------- a pair task that needs both texts

SYNONYMS = {
    "adjective": [("big", "large"), ("small", "little"), ("quick", "fast"), ("happy", "glad"), ("angry", "mad"),
                  ("quiet", "silent"), ("rich", "wealthy"), ("smart", "clever"), ("sick", "ill"),
                  ("tired", "sleepy"), ("strong", "powerful"), ("scared", "afraid")],
    "noun": [("car", "automobile"), ("doctor", "physician"), ("kid", "child"), ("lawyer", "attorney"),
             ("teacher", "instructor"), ("shop", "store"), ("film", "movie"), ("boat", "ship"), ("cop", "officer"),
             ("pupil", "student"), ("chef", "cook"), ("boss", "manager")],
    "verb": [("bought", "purchased"), ("fixed", "repaired"), ("liked", "enjoyed"), ("built", "constructed"),
             ("chose", "selected"), ("finished", "completed"), ("found", "discovered"), ("wanted", "desired"),
             ("hid", "concealed"), ("sold", "traded"), ("grabbed", "seized"), ("moved", "shifted")],
    "object": [("gift", "present"), ("couch", "sofa"), ("photo", "picture"), ("rock", "stone"),
               ("trash", "garbage"), ("hat", "cap"), ("road", "street"), ("house", "home"), ("rug", "carpet"),
               ("jar", "pot"), ("bag", "sack"), ("note", "letter")],
}


def _sentence(slots: dict[str, int], sides: dict[str, int]) -> str:
    words = {kind: SYNONYMS[kind][slots[kind]][sides[kind]] for kind in SYNONYMS}
    return f"the {words['adjective']} {words['noun']} {words['verb']} the {words['object']}"


def paraphrase_frame(n: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Do the two sentences say the same thing in other words? The second sentence renders every word as the other
    member of its synonym pair when the slot means the same, so no word ever repeats across the two sides and each
    word is as frequent in paraphrases as in the others: a bag of words over both texts sees nothing (about 0.5);
    only reading the two texts against each other tells them apart."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        slots = {kind: rng.randrange(len(SYNONYMS[kind])) for kind in SYNONYMS}
        sides = {kind: rng.randrange(2) for kind in SYNONYMS}
        same = i % 2 == 0
        other = dict(slots) if same else {kind: rng.randrange(len(SYNONYMS[kind])) for kind in SYNONYMS}
        if not same and other == slots:
            other["noun"] = (other["noun"] + 1) % len(SYNONYMS["noun"])
        # the same pair of synonyms in a slot is always written the other way round; another pair, at random
        other_sides = {kind: 1 - sides[kind] if other[kind] == slots[kind] else rng.randrange(2) for kind in SYNONYMS}
        rows.append({"sentence1": _sentence(slots, sides), "sentence2": _sentence(other, other_sides),
                     "label": "paraphrase" if same else "different"})
    rng.shuffle(rows)
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def pair_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pairs") / "pairs.csv"
    paraphrase_frame(240).to_csv(path, index=False)
    return path


# ---------------------------------------------------------------- data


@pytest.mark.parametrize("first,second", [("sentence1", "sentence2"), ("premise", "hypothesis"),
                                          ("question", "sentence"), ("question1", "question2"),
                                          ("text_a", "text_b"), ("query", "passage"), ("question", "passage")])
def test_standard_pair_columns_are_read_as_a_pair_without_flags(tmp_path, first, second):
    frame = paraphrase_frame(60).rename(columns={"sentence1": first, "sentence2": second})
    frame.to_csv(tmp_path / "pairs.csv", index=False)
    data = load_data(RunConfig(dataset=str(tmp_path / "pairs.csv")))
    assert data["train"].column_names == ["text", "text_pair", "label"]
    assert data.source_columns == {"text": first, "text_pair": second, "label": "label"}
    row = frame.set_index(first).loc[data["train"][0]["text"]]
    assert data["train"][0]["text_pair"] == (row[second] if isinstance(row, pd.Series) else row[second].iloc[0])


def test_any_two_columns_make_a_pair_with_text_pair_column(tmp_path):
    frame = paraphrase_frame(60).rename(columns={"sentence1": "claim", "sentence2": "evidence"})
    frame.to_csv(tmp_path / "pairs.csv", index=False)
    with pytest.raises(LftError, match="cannot tell which column holds the text"):
        load_data(RunConfig(dataset=str(tmp_path / "pairs.csv")))
    data = load_data(RunConfig(dataset=str(tmp_path / "pairs.csv"), text_column="claim", text_pair_column="evidence"))
    assert data.source_columns["text_pair"] == "evidence"
    assert set(data["test"]["text_pair"]) <= set(frame["evidence"])


def test_pair_bad_input_is_one_line(tmp_path):
    frame = paraphrase_frame(60)
    frame.to_csv(tmp_path / "pairs.csv", index=False)
    with pytest.raises(LftError, match="--text-pair-column 'sentence3' is not a column; the columns are: sentence1, "
                                       "sentence2, label"):
        load_data(RunConfig(dataset=str(tmp_path / "pairs.csv"), text_pair_column="sentence3"))
    frame.loc[[3, 7], "sentence2"] = ""
    frame.to_csv(tmp_path / "holes.csv", index=False)
    with pytest.raises(LftError, match=r"2 pairs have one side empty \(rows 3, 7; columns 'sentence1' and "
                                       r"'sentence2'\); fill both texts or remove those rows"):
        load_data(RunConfig(dataset=str(tmp_path / "holes.csv")))


def test_one_side_of_a_pair_given_as_text_column_is_said(tmp_path, caplog):
    paraphrase_frame(60).to_csv(tmp_path / "pairs.csv", index=False)
    data = load_data(RunConfig(dataset=str(tmp_path / "pairs.csv"), text_column="sentence1"))
    assert "text_pair" not in data["train"].column_names
    assert "pass --text-pair-column sentence2 to train on both" in caplog.text


# ---------------------------------------------------------------- encoding


@pytest.mark.parametrize("model", ["tiny-bert", "minilm"])
def test_pairs_encode_as_the_tokenizer_pair_api_and_truncation_keeps_both_sides(tiny_models, model):
    from lft_core.evaluate import encode
    from lft_core.models import load_tokenizer, resolve_model

    tokenizer = load_tokenizer(tiny_models["bert"] if model == "tiny-bert" else resolve_model(model))
    pairs = [("goal match team", "bread cheese"), ("software chip " * 30, "apple soup " * 30)]
    ids, lengths = encode(tokenizer, pairs, max_length=24)
    expected = tokenizer([a for a, _ in pairs], [b for _, b in pairs], truncation="longest_first", max_length=24)
    assert list(ids) == expected["input_ids"]
    assert ids.token_type_ids == expected.get("token_type_ids")  # MiniLM's BERT tokenizer gives them, the tiny one not
    assert lengths[1] > 24 and len(ids[1]) == 24
    sep = ids[1].index(tokenizer.sep_token_id)
    assert 1 < sep < 22 and ids[1][-1] == tokenizer.sep_token_id  # both texts kept a part
    if model == "minilm":
        assert set(ids.token_type_ids[1]) == {0, 1}


def test_single_texts_encode_as_before(tiny_models):
    from transformers import AutoTokenizer

    from lft_core.evaluate import encode

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["bert"])
    ids, _ = encode(tokenizer, ["goal match team", "bread"], max_length=24)
    assert ids == tokenizer(["goal match team", "bread"])["input_ids"]


def test_tfidf_reference_reads_both_texts_and_scores_about_chance_on_the_pair_task(tmp_path):
    from lft_core.baselines import joined_texts, tfidf_logreg

    paraphrase_frame(1000).to_csv(tmp_path / "pairs.csv", index=False)
    data = load_data(RunConfig(dataset=str(tmp_path / "pairs.csv")))
    joined = joined_texts(data["test"])
    assert joined[0] == f"{data['test'][0]['text']} [SEP] {data['test'][0]['text_pair']}"
    # the task needs both texts read together: a bag of words over both scores near chance
    assert tfidf_logreg(data).accuracy < 0.65


# ---------------------------------------------------------------- end to end on a tiny model


@pytest.fixture(scope="module")
def pair_run(tiny_models, pair_csv, tmp_path_factory):
    from lft_core import run

    output = tmp_path_factory.mktemp("runs") / "pair-run"
    cfg = RunConfig(model=tiny_models["bert"], dataset=str(pair_csv), epochs=1, max_length=64, output=str(output))
    return run(cfg)


def test_a_pair_run_records_its_shape_everywhere(pair_run):
    folder = pair_run.run_dir
    saved = json.loads((folder / "run_config.json").read_text())
    assert (saved["text_column"], saved["text_pair_column"]) == ("sentence1", "sentence2")
    report = json.loads((folder / "report.json").read_text())
    assert report["data"]["text_columns"] == ["sentence1", "sentence2"]
    assert report["data"]["pair_join"] == " [SEP] "
    markdown = (folder / "report.md").read_text()
    assert "'sentence1' and 'sentence2'" in markdown and "TF-IDF reads them joined" in markdown
    predictions = pd.read_csv(folder / "test_predictions.csv")
    assert list(predictions.columns[:3]) == ["text", "text_pair", "label"]
    card = (folder / "README.md").read_text()
    assert 'tokenizer(["the first text"], ["the second text"]' in card


def test_a_pair_run_predicts_from_a_file_with_no_flags(pair_run, pair_csv, tmp_path):
    rows = pd.read_csv(pair_csv).head(12)
    rows[["sentence1", "sentence2"]].to_csv(tmp_path / "new.csv", index=False)
    done = subprocess.run([sys.executable, "-m", "lft_core", "predict", "--adapter", str(pair_run.run_dir),
                           "--input", str(tmp_path / "new.csv")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = pd.read_csv(pd.io.common.StringIO(done.stdout))
    assert list(out.columns[:3]) == ["text", "text_pair", "label"] and len(out) == 12
    assert out["text_pair"].tolist() == rows["sentence2"].tolist()
    # the same folder's test predictions come back through predict
    from lft_core.predict import Predictor

    test = pd.read_csv(pair_run.run_dir / "test_predictions.csv")
    again = Predictor(pair_run.run_dir).predict(list(zip(test["text"], test["text_pair"])))
    assert again["label"].tolist() == test["finetuned_prediction"].tolist()


def test_a_pair_run_refuses_single_texts_in_one_line(pair_run, tmp_path):
    (tmp_path / "one.txt").write_text("the big car bought the gift\n")
    done = subprocess.run([sys.executable, "-m", "lft_core", "predict", "--adapter", str(pair_run.run_dir),
                           "--input", str(tmp_path / "one.txt")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: this run reads sentence pairs (sentence1, sentence2); pass a csv or jsonl file with both columns, not "
        "a txt file"]


def test_a_pair_run_compares_and_predicts_live(pair_run):
    import lft_core
    from lft_core.compare import changed_rows, example_texts, summary_table

    assert len(summary_table([str(pair_run.run_dir)])) == 1
    assert list(changed_rows(str(pair_run.run_dir)).columns[-2:]) == ["text", "text_pair"]
    first, second = example_texts(str(pair_run.run_dir))[0]
    base, tuned = lft_core.live_predict(str(pair_run.run_dir), first, second)
    assert set(base) == set(tuned) == {"different", "paraphrase"}
    with pytest.raises(LftError, match="this run reads sentence pairs .*type the second text too"):
        lft_core.live_predict(str(pair_run.run_dir), first)


def test_a_pair_folder_loads_with_load_adapter_and_scores_pairs(pair_run):
    import torch

    from lft_core import load_adapter

    model, tokenizer = load_adapter(pair_run.run_dir)
    test = pd.read_csv(pair_run.run_dir / "test_predictions.csv")
    batch = tokenizer(test["text"].tolist(), test["text_pair"].tolist(), return_tensors="pt", padding=True,
                      truncation="longest_first", max_length=64)
    with torch.no_grad():
        predicted = model(**batch).logits.argmax(-1).tolist()
    assert [model.config.id2label[i] for i in predicted] == test["finetuned_prediction"].tolist()


# ---------------------------------------------------------------- folders saved before shapes


@pytest.fixture
def old_run(tmp_path) -> Path:
    folder = tmp_path / "saved_adapters" / FIXTURE_RUN.name
    shutil.copytree(FIXTURE_RUN, folder)
    return folder


def test_a_run_folder_saved_by_the_previous_main_still_loads_predicts_and_compares(old_run):
    import lft_core
    from lft_core.compare import changed_rows, summary_table
    from lft_core.predict import Predictor
    from lft_core.report import read_report

    report = read_report(old_run)
    assert "texts" not in dict(lft_core.report.facts(report))  # it recorded no shape: nothing is made up
    predictor = Predictor(old_run)
    assert not predictor.is_pair
    test = pd.read_csv(old_run / "test_predictions.csv")
    again = predictor.predict(test["text"].tolist())
    assert list(again.columns) == ["text", "label", "probability"]
    assert (again["label"] == test["finetuned_prediction"]).mean() >= 0.9  # saved from bf16-scored logits
    table = summary_table([str(old_run)])
    assert table.iloc[0]["run"] == old_run.name
    assert list(changed_rows(str(old_run)).columns)[-1] == "text"
    base, tuned = lft_core.live_predict(str(old_run), test["text"].iloc[0])
    assert set(tuned) == set(report.label_names)


# ---------------------------------------------------------------- the accuracy claim, with the default model


@pytest.mark.slow
def test_a_pair_csv_trains_with_no_flags_to_090_with_minilm(tmp_path):
    """The issue's "done when": a pair CSV with standard column names, whose label needs both texts, trains with the
    default model and no shape flags; run as the README runs it."""
    frame = paraphrase_frame(1000)
    frame.to_csv(tmp_path / "pairs.csv", index=False)
    output = tmp_path / "minilm-pairs"
    done = subprocess.run([sys.executable, "-m", "lft_core", "run", "--dataset", str(tmp_path / "pairs.csv"),
                           "--output", str(output)], capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((output / "report.json").read_text())
    tuned, tfidf = report["finetuned_metrics"]["scores"]["accuracy"], report["references"]["tfidf"]["scores"]["accuracy"]
    print(f"minilm pair accuracy {tuned:.3f}, TF-IDF {tfidf:.3f}, train {report['timing']['train_s']:.0f} s")
    assert tfidf < 0.65
    assert tuned >= 0.9
    assert report["data"]["text_columns"] == ["sentence1", "sentence2"]


# ---------------------------------------------------------------- multi-label

TAGS = {"sport": "goal match team player score league".split(), "tech": "software chip computer phone data code".split(),
        "food": "bread cheese apple soup pasta salad".split()}
FILLER = "the a of and to in is on with for this that".split()


def tagged_frame(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """Each text carries 0 to 3 topics, each through 2 of its words: the tags are the topics present."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        tags = sorted(t for t in TAGS if rng.random() < 0.4)
        words = rng.sample(FILLER, 4) + [w for t in tags for w in rng.sample(TAGS[t], 2)]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "labels": tags})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def tags_jsonl(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tags") / "tags.jsonl"
    tagged_frame().to_json(path, orient="records", lines=True)
    return path


def test_a_jsonl_of_label_lists_is_multi_label_without_flags(tags_jsonl):
    from lft_core.data import is_multi_label_split, label_names

    data = load_data(RunConfig(dataset=str(tags_jsonl)))
    assert is_multi_label_split(data["train"]) and label_names(data["train"]) == ["food", "sport", "tech"]
    frame = tagged_frame()
    texts = dict(zip(frame["text"], frame["labels"]))
    row = data["test"][0]
    assert [label_names(data["test"])[i] for i in row["label"]] == texts[row["text"]]
    assert any(len(r) == 0 for r in data["train"]["label"])  # a text with no tag is kept


def test_a_csv_takes_a_label_separator_and_says_when_it_splits_nothing(tmp_path):
    frame = tagged_frame(120)
    frame.assign(labels=frame["labels"].map(";".join)).to_csv(tmp_path / "tags.csv", index=False)
    data = load_data(RunConfig(dataset=str(tmp_path / "tags.csv"), label_separator=";"))
    assert data["train"].features["label"].feature.names == ["food", "sport", "tech"]
    with pytest.raises(LftError, match=r"--label-separator '\|' splits no label of column 'labels' .*; pass the "
                                       r"character between a text's labels"):
        load_data(RunConfig(dataset=str(tmp_path / "tags.csv"), label_separator="|"))


def test_multi_label_rows_with_labels_unknown_in_train_are_one_line(tmp_path):
    frame = tagged_frame(120)
    frame.iloc[:90].to_json(tmp_path / "train.jsonl", orient="records", lines=True)
    test = frame.iloc[90:].copy()
    test.at[test.index[2], "labels"] = ["sport", "weather"]
    test.to_json(tmp_path / "test.jsonl", orient="records", lines=True)
    with pytest.raises(LftError, match="the test split has labels never seen in training: weather; add training "
                                       "examples of them or remove those labels"):
        load_data(RunConfig(dataset=str(tmp_path)))


def test_multi_label_metrics_and_the_verdict_name_a_label_never_predicted():
    import numpy as np

    from lft_core.evaluate import compute_multi_label_metrics
    from lft_core.report import judge

    names = ["food", "sport", "tech"]
    truth = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 0]])
    predicted = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 1, 0]])
    tuned = compute_multi_label_metrics(truth, predicted, names, threshold=0.4)
    assert tuned.scores["accuracy"] == 0.75  # 3 of 4 label sets exactly right
    assert tuned.per_class["tech"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert tuned.multi_label["cardinality"] == 1.25 and tuned.multi_label["never_predicted"] == ["tech"]
    assert round(tuned.scores["micro_f1"], 4) == round(2 * 4 / (2 * 4 + 1), 4)
    base = compute_multi_label_metrics(truth, np.zeros_like(truth), names)
    verdict = judge(base, tuned, {"majority": base})
    assert verdict.kind == "improved"
    assert "It never predicts 'tech' (on any test text)." in verdict.details


@pytest.fixture(scope="module")
def tags_run(tiny_models, tags_jsonl, tmp_path_factory):
    from lft_core import run

    output = tmp_path_factory.mktemp("runs") / "tags-run"
    cfg = RunConfig(model=tiny_models["bert"], dataset=str(tags_jsonl), epochs=3, max_length=32,
                    learning_rate=5e-3, output=str(output))
    return run(cfg)


def test_a_multi_label_run_trains_a_sigmoid_head_and_reports_every_score(tags_run):
    folder = tags_run.run_dir
    base_ref = json.loads((folder / "base_model.json").read_text())
    assert base_ref["problem_type"] == "multi_label_classification" and 0 < base_ref["threshold"] < 1
    report = json.loads((folder / "report.json").read_text())
    tuned = report["finetuned_metrics"]
    assert set(tuned["scores"]) == {"accuracy", "macro_f1", "micro_f1"}
    assert tuned["multi_label"]["threshold"] == base_ref["threshold"]
    assert set(tuned["per_class"]) == {"food", "sport", "tech"}
    assert all(v["support"] > 0 for v in tuned["per_class"].values())
    assert set(report["references"]) == {"majority", "tfidf"}
    assert report["references"]["tfidf"]["multi_label"] is not None
    markdown = (folder / "report.md").read_text()
    for row in ("subset accuracy", "micro-F1", "labels per text", "F1 sport (support"):
        assert row in markdown
    assert "the labels on more than half of the training texts" in markdown
    assert "TF-IDF + one-vs-rest logistic regression" in markdown
    predictions = pd.read_csv(folder / "test_predictions.csv", keep_default_na=False)
    assert set(";".join(predictions["label"]).split(";")) - {""} <= {"food", "sport", "tech"}
    card = (folder / "README.md").read_text()
    assert f"if p >= {base_ref['threshold']}" in card and ".sigmoid()" in card


def test_a_multi_label_folder_predicts_label_sets_with_no_flags(tags_run, tmp_path):
    from lft_core.predict import Predictor

    test = pd.read_csv(tags_run.run_dir / "test_predictions.csv", keep_default_na=False)
    frame = Predictor(tags_run.run_dir).predict(test["text"].tolist())
    assert list(frame.columns) == ["text", "labels", "p_food", "p_sport", "p_tech"]
    assert frame["labels"].tolist() == test["finetuned_prediction"].tolist()
    (tmp_path / "new.txt").write_text("\n".join(test["text"].head(5)) + "\n")
    done = subprocess.run([sys.executable, "-m", "lft_core", "predict", "--adapter", str(tags_run.run_dir),
                           "--input", str(tmp_path / "new.txt")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "text,labels,p_food,p_sport,p_tech"


# ---------------------------------------------------------------- the model card's plain-peft code, per shape

PLAIN_PEFT = """
import json, sys, torch, pandas as pd
from peft import AutoPeftModelForSequenceClassification
from transformers import AutoTokenizer
folder = sys.argv[1]
head = json.load(open(folder + "/base_model.json"))
labels = [head["id2label"][str(i)] for i in range(head["num_labels"])]
model = AutoPeftModelForSequenceClassification.from_pretrained(
    folder, num_labels=len(labels), id2label=dict(enumerate(labels)),
    label2id={n: i for i, n in enumerate(labels)}, pad_token_id=head["pad_token_id"]).eval()
tokenizer = AutoTokenizer.from_pretrained(folder)
rows = pd.read_csv(folder + "/test_predictions.csv", keep_default_na=False)
predicted = []
for start in range(0, len(rows), 16):
    part = rows.iloc[start:start + 16]
    if "text_pair" in rows:  # a pair goes in as tokenizer(a, b), as the model card says
        batch = tokenizer(part.text.tolist(), part.text_pair.tolist(), return_tensors="pt", padding=True,
                          truncation="longest_first", max_length=int(sys.argv[2]))
    else:
        batch = tokenizer(part.text.tolist(), return_tensors="pt", padding=True, truncation=True,
                          max_length=int(sys.argv[2]))
    with torch.no_grad():
        logits = model(**batch).logits
    if head.get("problem_type") == "multi_label_classification":  # sigmoid > threshold, as the model card says
        predicted += [";".join(l for l, p in zip(labels, row) if p >= head["threshold"])
                      for row in logits.sigmoid().tolist()]
    else:
        predicted += [labels[i] for i in logits.argmax(-1).tolist()]
assert predicted == rows.finetuned_prediction.tolist(), "predictions differ"
assert "lft_core" not in sys.modules
print("ok", len(predicted))
"""


@pytest.mark.parametrize("which,max_length", [("pair_run", 64), ("tags_run", 32)])
def test_each_shape_loads_in_a_fresh_process_with_plain_peft_and_reproduces_its_test_predictions(
        request, which, max_length, tmp_path):
    import os

    folder = request.getfixturevalue(which).run_dir
    card = (folder / "README.md").read_text()
    assert ("tokenizer([" in card and '"the second text"' in card) if which == "pair_run" else ".sigmoid()" in card
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LFT_", "HF_"))}
    env.update(HOME=str(tmp_path / "home"), HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, "-c", PLAIN_PEFT, str(folder), str(max_length)], capture_output=True,
                          text=True, cwd="/", env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ok")


# ---------------------------------------------------------------- health check and the app, per shape


def test_the_health_check_reads_pairs_and_label_sets(tmp_path, tiny_models):
    from lft_core.health import check_dataset
    from lft_core.models import load_tokenizer

    paraphrase_frame(120).to_csv(tmp_path / "pairs.csv", index=False)
    tokenizer = load_tokenizer(tiny_models["bert"])
    pairs = check_dataset(RunConfig(dataset=str(tmp_path / "pairs.csv")), tokenizer)
    assert list(pairs.samples.columns) == ["label", "text", "text_pair"]
    data = load_data(RunConfig(dataset=str(tmp_path / "pairs.csv")))
    singles = [len(tokenizer(t)["input_ids"]) for t in data["train"]["text"]]
    assert min(b - a for a, b in zip(singles, pairs.lengths)) > 0  # a pair's length counts both texts

    frame = tagged_frame(120)
    frame.loc[:2, "labels"] = frame.loc[:2, "labels"].map(lambda tags: tags + ["rare"])
    frame.assign(labels=frame["labels"].map(";".join)).to_csv(tmp_path / "tags.csv", index=False)
    with pytest.raises(LftError, match="rows have no label .* Also: .*pass --label-separator ';'"):
        check_dataset(RunConfig(dataset=str(tmp_path / "tags.csv")))  # refused, and told why: the separator
    tags = check_dataset(RunConfig(dataset=str(tmp_path / "tags.csv"), label_separator=";"))
    assert dict(zip(tags.balance["class"], tags.balance["train"]))["rare"] <= 3
    assert any("labels per text" in w and "most frequent together" in w for w in tags.warnings)
    assert any("fewer than 5 training texts: rare" in w for w in tags.warnings)


def test_the_compare_tab_predicts_a_pair_from_two_boxes(pair_run):
    from ui.compare_tab import example_choices, on_example, on_predict

    root, name = pair_run.run_dir.parent, pair_run.run_dir.name
    shown, value = example_choices(str(pair_run.run_dir))[0]
    first, second = on_example(value)
    assert "⟷" in shown and first in shown and second
    base, tuned, latency = on_predict(root, [name], first, second)
    assert set(tuned) == {"different", "paraphrase"} and "ms" in latency
    assert on_example("a single text") == ("a single text", "")


def test_the_data_form_carries_the_shape_fields():
    import gradio as gr

    from ui.forms import DataForm

    with gr.Blocks():
        form = DataForm.create()
    values = form.values({**{getattr(form, name): None for name in ("text_column", "label_column", "max_train_samples",
                                                                    "max_eval_samples", "max_length", "truncation",
                                                                    "seed")},
                          form.model: "minilm", form.dataset: "pairs.csv", form.text_pair_column: "hypothesis",
                          form.label_separator: ";"})
    assert values["text_pair_column"] == "hypothesis" and values["label_separator"] == ";"


@pytest.mark.parametrize("method", ["prefix-tuning", "full"])
def test_other_methods_train_both_shapes(tiny_models, pair_csv, tags_jsonl, tmp_path, method):
    """A prompt-learning method (virtual tokens before the pair's token type ids) and a plain one (no
    base_model.json, so the threshold comes from the report) on both shapes, one short epoch each."""
    from lft_core import run
    from lft_core.predict import Predictor

    for name, dataset in (("pairs", pair_csv), ("tags", tags_jsonl)):
        result = run(RunConfig(model=tiny_models["bert"], dataset=str(dataset), method=method, epochs=1,
                               max_length=48, max_train_samples=64, tfidf_reference=False,
                               output=str(tmp_path / f"{method}-{name}")))
        test = pd.read_csv(result.run_dir / "test_predictions.csv", keep_default_na=False)
        inputs = list(zip(test["text"], test["text_pair"])) if name == "pairs" else test["text"].tolist()
        again = Predictor(result.run_dir).predict(inputs)
        column = "label" if name == "pairs" else "labels"
        assert (again[column] == test["finetuned_prediction"]).mean() >= 0.9


def test_hub_shaped_sets_read_offline_pairs_and_list_labels_with_classlabel_names(monkeypatch):
    """glue/mrpc's layout (sentence1, sentence2, a ClassLabel label) and go_emotions' (labels: a list of ints with
    ClassLabel names), served by a stand-in for datasets.load_dataset, since the Hub is out of reach here."""
    import datasets
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value

    import lft_core.hub

    pairs = paraphrase_frame(90)
    pair_features = Features({"sentence1": Value("string"), "sentence2": Value("string"),
                              "label": ClassLabel(names=["not_equivalent", "equivalent"]), "idx": Value("int32")})
    mrpc = {split: Dataset.from_dict({"sentence1": part["sentence1"].tolist(), "sentence2": part["sentence2"].tolist(),
                                      "label": (part["label"] == "paraphrase").astype(int).tolist(),
                                      "idx": list(range(len(part)))}, features=pair_features)
            for split, part in (("train", pairs.iloc[:60]), ("validation", pairs.iloc[60:75]), ("test", pairs.iloc[75:]))}
    tags = tagged_frame(90)
    names = ["food", "sport", "tech"]
    tag_features = Features({"text": Value("string"), "labels": Sequence(ClassLabel(names=names)), "id": Value("string")})
    emotions = {split: Dataset.from_dict({"text": part["text"].tolist(),
                                          "labels": [[names.index(t) for t in row] for row in part["labels"]],
                                          "id": [str(i) for i in range(len(part))]}, features=tag_features)
                for split, part in (("train", tags.iloc[:60]), ("validation", tags.iloc[60:75]), ("test", tags.iloc[75:]))}
    served = {"glue": DatasetDict(mrpc), "go_emotions": DatasetDict(emotions)}
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None, **kw: served[name])
    monkeypatch.setattr(lft_core.hub, "hub_reachable", lambda timeout=3.0: True)

    glue = load_data(RunConfig(dataset="glue", dataset_config="mrpc"))
    assert glue.source_columns["text_pair"] == "sentence2"
    assert glue["train"].features["label"].names == ["not_equivalent", "equivalent"]
    go = load_data(RunConfig(dataset="go_emotions"))
    assert go["train"].features["label"].feature.names == names
    first = go["test"][0]
    assert [names[i] for i in first["label"]] == tags.iloc[75:].set_index("text").loc[first["text"], "labels"]


def test_the_zero_shot_reference_says_it_is_not_for_label_sets(tags_jsonl):
    from lft_core.baselines import zero_shot

    with pytest.raises(ValueError, match="picks one label per text; it is not computed for multi-label data"):
        zero_shot("minilm", load_data(RunConfig(dataset=str(tags_jsonl))), 32)


def test_a_decoder_reads_pairs_too(tiny_models, pair_csv, tmp_path):
    """A Llama-style decoder (left or right padding, pooled on the last real token) on the pair API's encoding."""
    from lft_core import run
    from lft_core.predict import Predictor

    result = run(RunConfig(model=tiny_models["llama"], dataset=str(pair_csv), epochs=1, max_length=48,
                           max_train_samples=64, tfidf_reference=False, output=str(tmp_path / "llama-pairs")))
    test = pd.read_csv(result.run_dir / "test_predictions.csv")
    again = Predictor(result.run_dir).predict(list(zip(test["text"], test["text_pair"])))
    assert (again["label"] == test["finetuned_prediction"]).mean() >= 0.9


def test_both_shapes_compare_and_predict_through_the_running_app(pair_run, tags_run, tmp_path):
    """The app as a script drives it (gradio_client against app.py on 127.0.0.1): compare each folder, live-predict a
    pair from the two boxes, label a file with the multi-label run."""
    import os

    from gradio_client import Client, handle_file
    from test_app import REPO, call, start_app

    root = tmp_path / "saved_adapters"
    for run_dir in (pair_run.run_dir, tags_run.run_dir):
        shutil.copytree(run_dir, root / run_dir.name)
    process, url = start_app(REPO, {**os.environ, "LFT_ADAPTERS_DIR": str(root)}, tmp_path / "app.log")
    try:
        client = Client(url, verbose=False)
        verdict, table, *_ = call(client, "/compare", {"Saved adapters to compare": [pair_run.run_dir.name]})
        assert pair_run.run_dir.name in verdict
        test = pd.read_csv(pair_run.run_dir / "test_predictions.csv")
        base, tuned, latency = call(client, "/predict", {"Saved adapters to compare": [pair_run.run_dir.name],
                                                         "Text": test["text"][0],
                                                         "Second text (sentence-pair runs)": test["text_pair"][0]})
        assert tuned["label"] == test["finetuned_prediction"][0]
        verdict, *_ = call(client, "/compare", {"Saved adapters to compare": [tags_run.run_dir.name]})
        assert "micro-F1" in verdict
        tags = pd.read_csv(tags_run.run_dir / "test_predictions.csv", keep_default_na=False)
        (tmp_path / "new.txt").write_text("\n".join(tags["text"].head(6)) + "\n")
        labelled = call(client, "/predict_file", {"Run to label with": tags_run.run_dir.name,
                                                  "Texts (csv / jsonl with a text column, or txt: one per line)":
                                                      handle_file(str(tmp_path / "new.txt"))})
        frame = pd.read_csv(labelled, keep_default_na=False)
        assert frame["labels"].tolist() == tags["finetuned_prediction"].head(6).tolist()
    finally:
        process.terminate()
        process.wait(timeout=60)


@pytest.mark.slow
def test_a_pair_is_predicted_from_two_boxes_in_a_browser(pair_run, tmp_path):
    """Clicked in headless Chromium, as a user would: the Compare tab, the run preselected, both boxes, Enter."""
    import os

    from test_app import REPO, start_app
    from test_app_as_launched import CHROMIUM

    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh --dev installs it)")
    from playwright.sync_api import expect, sync_playwright

    root = tmp_path / "saved_adapters"
    shutil.copytree(pair_run.run_dir, root / pair_run.run_dir.name)
    test = pd.read_csv(pair_run.run_dir / "test_predictions.csv")
    process, url = start_app(REPO, {**os.environ, "LFT_ADAPTERS_DIR": str(root)}, tmp_path / "app.log")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.goto(url, wait_until="load")
            page.get_by_role("tab", name="4. Compare").click()
            page.get_by_role("button", name="Compare", exact=True).first.click()
            expect(page.locator("#compare-verdict")).to_contain_text(pair_run.run_dir.name, timeout=60_000)
            page.get_by_label("Text", exact=True).fill(test["text"][0])
            second = page.get_by_label("Second text (sentence-pair runs)")
            second.fill(test["text_pair"][0])
            second.press("Enter")
            expect(page.get_by_text("ms for both models")).to_be_visible(timeout=120_000)
            shown = page.locator("[data-testid='label-output-value']")
            assert shown.count() >= 2
            expect(shown.nth(1)).to_contain_text(test["finetuned_prediction"][0])
            browser.close()
    finally:
        process.terminate()
        process.wait(timeout=60)
