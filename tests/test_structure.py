"""Structure: run folders saved by an earlier main still compare, load and predict (a missing metric reads as "not
measured"); the import graph has no circle and no arrow back up; the public API is explicit; each policy (Hub
reachability, default max length, batch and learning rate) has one home."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lft_core
from lft_core import report as reports

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "run-2dc49eb"
"""A run folder saved by main at 2dc49eb (minilm, LoRA, bbc-news, 60 train / 30 test texts)."""
METRIC_KEYS = [m.key for m in lft_core.METRICS]


def _import_graph():
    """scripts/import_graph.py as a module (registered first: its dataclass looks itself up in sys.modules)."""
    if "import_graph" not in sys.modules:
        spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts" / "import_graph.py")
        sys.modules["import_graph"] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules["import_graph"]


def _old_run(root: Path, drop: str | None = None) -> Path:
    """The fixture copied into the runs folder; with `drop`, its report.json as a run saved before that metric
    existed (gone from the base, the fine-tuned model and the references)."""
    folder = root / (f"run-2dc49eb-without-{drop}" if drop else "run-2dc49eb")
    shutil.copytree(FIXTURE, folder)
    if drop:
        values = json.loads((folder / "report.json").read_text())
        for metrics in [values["base_metrics"], values["finetuned_metrics"], *values["references"].values()]:
            del metrics["scores"][drop]
        (folder / "report.json").write_text(json.dumps(values))
    return folder


@pytest.fixture
def runs_root(tmp_path) -> Path:
    root = lft_core.adapters_root()
    root.mkdir(parents=True, exist_ok=True)
    return root


# ---------------------------------------------------------------- old run folders


def test_a_run_saved_by_the_previous_main_compares(runs_root):
    folder = _old_run(runs_root)
    saved = json.loads((FIXTURE / "report.json").read_text())
    table = lft_core.summary_table([str(folder)])
    for m in lft_core.METRICS:
        assert table.iloc[0][m.label] == round(saved["finetuned_metrics"]["scores"][m.key], 4)
        assert table.iloc[0][f"base {m.label}"] == round(saved["base_metrics"]["scores"][m.key], 4)
    rep = lft_core.read_report(folder)
    rows = reports.comparison_rows(rep)
    assert [r[0] for r in rows[:len(METRIC_KEYS)]] == [m.label for m in lft_core.METRICS]
    assert rows[0][2] == f"{saved['finetuned_metrics']['scores'][METRIC_KEYS[0]]:.4f}"
    assert reports.NOT_MEASURED not in reports.report_markdown(rep) + reports.cli_summary(rep)
    assert len(lft_core.comparison_figures([str(folder)])) == 4
    assert len(lft_core.changed_rows(str(folder))) == sum(
        pd.read_csv(FIXTURE / "test_predictions.csv").eval("base_prediction != finetuned_prediction"))


@pytest.mark.parametrize("drop", METRIC_KEYS)
def test_a_report_without_a_metric_compares_with_not_measured(runs_root, drop):
    old, full = _old_run(runs_root, drop), _old_run(runs_root)
    label = next(m.label for m in lft_core.METRICS if m.key == drop)
    table = lft_core.summary_table([str(old), str(full)]).set_index("run")
    assert table.loc[old.name, label] == table.loc[old.name, f"base {label}"] == reports.NOT_MEASURED
    assert isinstance(table.loc[full.name, label], float)
    for other in (m for m in lft_core.METRICS if m.key != drop):
        assert table.loc[old.name, other.label] == table.loc[full.name, other.label]

    rep = lft_core.read_report(old)
    assert (label, reports.NOT_MEASURED, reports.NOT_MEASURED) in reports.comparison_rows(rep)
    assert f"| {label} | {reports.NOT_MEASURED} | {reports.NOT_MEASURED} | {reports.NOT_MEASURED} |" in \
        reports.comparison_markdown(rep)
    assert reports.NOT_MEASURED in reports.cli_summary(rep)
    bars = lft_core.comparison_figures([str(full), str(old)])[0]
    assert reports.NOT_MEASURED in [t for trace in bars.data for t in trace.text]

    from lft_core.sweep import _row

    assert _row(old)[drop] is None


def test_the_app_compares_an_old_run_and_one_without_a_metric(runs_root):
    from ui.compare_tab import _runs_frame, on_compare

    old, full = _old_run(runs_root, METRIC_KEYS[-1]), _old_run(runs_root)
    verdict, table, *figures, examples, classes, changes = on_compare(runs_root, [old.name, full.name])
    assert lft_core.read_report(full).verdict.headline in verdict and reports.NOT_MEASURED in table.to_string()
    assert all(hasattr(f, "to_json") for f in figures) and examples["choices"] and len(changes)
    listed = _runs_frame(runs_root).set_index("run")
    assert listed.loc[old.name, lft_core.METRICS[-1].label] is None or pd.isna(
        listed.loc[old.name, lft_core.METRICS[-1].label])


def test_the_app_predicts_live_with_an_old_run_as_the_run_scored(runs_root):
    """Live prediction loads the base as the run scored it (same seed, fresh head) and the reloaded adapter."""
    from ui.compare_tab import on_predict

    folder = _old_run(runs_root)
    row = pd.read_csv(folder / "test_predictions.csv").iloc[0]
    base, tuned, timing = on_predict(runs_root, [folder.name], row["text"])
    assert tuned[row["label"]] == pytest.approx(row["finetuned_true_prob"], abs=1e-3)
    assert base[row["label"]] == pytest.approx(row["base_true_prob"], abs=1e-3)
    assert "ms" in timing


def test_a_run_saved_by_the_previous_main_loads_and_predicts_as_it_did(runs_root):
    """The reloaded adapter gives the probabilities the run recorded for its test texts, in plain and merged form."""
    from lft_core.evaluate import predict_logits, softmax

    folder = _old_run(runs_root)
    saved = pd.read_csv(folder / "test_predictions.csv")
    config = lft_core.read_run_config(folder)
    model, tokenizer = lft_core.load_adapter(folder)
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    probs = softmax(predict_logits(model.eval(), tokenizer, saved["text"].tolist(), config["max_length"], None,
                                   config["truncation"]))
    true = [names.index(label) for label in saved["label"]]
    np.testing.assert_allclose(probs[np.arange(len(saved)), true], saved["finetuned_true_prob"], atol=1e-3)
    assert [names[i] for i in probs.argmax(-1)] == saved["finetuned_prediction"].tolist()

    predicted = lft_core.Predictor(folder).predict(saved["text"].tolist()[:4])
    assert predicted["label"].tolist() == saved["finetuned_prediction"].tolist()[:4]


# ---------------------------------------------------------------- the import graph


def test_the_graph_sees_module_and_function_level_imports():
    graph = _import_graph()
    edges = {(e.source, e.target, e.kind) for e in graph.edges()}
    assert ("lft_core.engine", "lft_core.train", "module") in edges
    assert ("lft_core.config", "lft_core.methods", "function") in edges
    assert ("ui.train_tab", "ui.jobs", "module") in edges
    assert ("lft_core", "lft_core.engine", "type") in edges  # under TYPE_CHECKING: never run


def test_no_import_circle_and_no_arrow_back_up():
    graph = _import_graph()
    edges = graph.edges()
    assert graph.circles(edges, ("module",)) == []
    # a circle closed by an import inside a function still ties the two modules together (config <-> methods did)
    assert graph.circles(edges, ("module", "function")) == []
    assert graph.upward(edges) == []


def test_the_circle_finder_finds_a_circle():
    graph = _import_graph()
    edges = [graph.Edge("a", "b", "module"), graph.Edge("b", "c", "function"), graph.Edge("c", "a", "module")]
    assert graph.circles(edges, ("module",)) == []
    assert graph.circles(edges, ("module", "function")) == [["a", "b", "c", "a"]]
    assert graph.upward([graph.Edge("lft_core.runs", "ui.jobs", "function")])


def test_ui_uses_only_the_public_api():
    """ui/ reaches lft_core through the package (and the modules it exports), never into a module's insides."""
    public = {"lft_core", *(f"lft_core.{n}" for n in lft_core.__all__)}
    inside = [(e.source, e.target) for e in _import_graph().edges()
              if e.source.startswith("ui.") and e.target.startswith("lft_core") and e.target not in public]
    assert inside == []


# ---------------------------------------------------------------- the public API


def test_every_public_name_imports():
    assert len(set(lft_core.__all__)) == len(lft_core.__all__)
    for name in lft_core.__all__:
        value = getattr(lft_core, name)
        assert getattr(value, "__module__", getattr(value, "__name__", "lft_core")).startswith("lft_core") \
            or name.isupper(), name
    namespace: dict = {}
    exec("from lft_core import *", namespace)
    assert set(lft_core.__all__) <= set(namespace)
    assert callable(lft_core.evaluate)  # the function, not its module


def test_the_lazy_names_are_written_out_for_editors():
    """Each name imported on first use is also imported under TYPE_CHECKING, from the same module."""
    tree = ast.parse((ROOT / "lft_core" / "__init__.py").read_text())
    typed = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for imp in node.body:
                for alias in imp.names:
                    module = imp.module.removeprefix("lft_core").lstrip(".") or None
                    typed[alias.name] = module if module else None
    assert typed == lft_core._LAZY
    eager = {n for n in lft_core.__all__ if n not in lft_core._LAZY}
    assert eager <= set(vars(lft_core))  # imported at once, not through __getattr__


def test_import_lft_core_leaves_the_heavy_libraries_unloaded():
    heavy = ["transformers", "peft", "datasets", "pandas", "plotly", "gradio", "sklearn"]
    code = f"import sys, lft_core; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------- one home per policy


def _defined_in(name: str) -> list[str]:
    """The lft_core/ui files that define `name` (a def, a class or an assignment at module level)."""
    found = []
    for path in sorted([*(ROOT / "lft_core").glob("*.py"), *(ROOT / "ui").glob("*.py")]):
        for node in ast.parse(path.read_text()).body:
            targets = [node.name] if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else [
                t.id for t in getattr(node, "targets", [getattr(node, "target", None)]) if isinstance(t, ast.Name)]
            if name in targets:
                found.append(str(path.relative_to(ROOT)))
    return found


def test_hub_reachability_has_one_home():
    assert _defined_in("hub_reachable") == ["lft_core/hub.py"]
    users = [str(p.relative_to(ROOT)) for p in (ROOT / "lft_core").glob("*.py") if "socket" in {
        a.name for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, ast.Import) for a in n.names}]
    assert users == ["lft_core/hub.py"]


def test_hub_reachability_is_asked_in_one_place(monkeypatch, runs_root):
    """models, data and runs all ask lft_core.hub, so one switch there takes every caller offline."""
    from lft_core import data, hub, models

    calls = []
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=3.0: calls.append(timeout) or False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    assert "unreachable" in models._offline_hint("someone/model", "someone/model")
    with pytest.raises(lft_core.LftError, match="unreachable"):
        data._hub_splits("someone/dataset", lft_core.RunConfig(dataset="someone/dataset"))
    with pytest.raises(lft_core.LftError, match="unreachable"):
        lft_core.push_to_hub(_old_run(runs_root).name, "someone/run", "a-token")
    assert len(calls) == 3


def test_the_default_max_length_is_decided_in_one_place(tiny_models):
    from lft_core.engine import with_max_length
    from lft_core.health import LONG_TEXT_LENGTH

    assert lft_core.default_max_length() == lft_core.DEFAULT_MAX_LENGTH == LONG_TEXT_LENGTH
    assert lft_core.default_max_length(lft_core.DEFAULT_MAX_LENGTH // 2) == lft_core.DEFAULT_MAX_LENGTH // 2
    assert lft_core.default_max_length(lft_core.DEFAULT_MAX_LENGTH * 4) == lft_core.DEFAULT_MAX_LENGTH
    cfg = with_max_length(lft_core.RunConfig(model=tiny_models["bert"]))
    assert cfg.max_length == lft_core.default_max_length(128)  # the tiny BERT takes 128 positions
    assert _defined_in("DEFAULT_MAX_LENGTH") == ["lft_core/config.py"]
    assert str(lft_core.DEFAULT_MAX_LENGTH) in lft_core.RunConfig.__dataclass_fields__["max_length"].metadata["help"]


def test_the_batch_and_learning_rate_policy_has_one_home():
    for name in ("auto_batch_size", "micro_batches", "default_learning_rate", "LR_REFERENCE_BATCH",
                 "TRAIN_BATCH_TOKENS", "MICRO_BATCH_TEXTS", "EVAL_BATCH_TOKENS"):
        assert _defined_in(name) == ["lft_core/batching.py"], name
    fields = lft_core.RunConfig.__dataclass_fields__
    for name in ("learning_rate", "batch_size", "eval_batch_size"):
        text = fields[name].metadata["help"]
        assert "lft_core/batching.py" in text and not any(c.isdigit() for c in text), (name, text)


def test_the_form_hint_comes_from_lft_core():
    from ui.forms import learning_rate_hint

    for name in ("lora", "prompt-tuning"):
        spec = lft_core.get_method(name)
        assert learning_rate_hint(spec) == lft_core.learning_rate_hint(spec.learning_rate)
        assert f"{spec.learning_rate:g}" in learning_rate_hint(spec)


# ---------------------------------------------------------------- numbers live in benchmarks/results/

MEASURED = re.compile(r"\b\d[\d,]*(\.\d+)?\s?(s|ms|%|x a step|tokens/s|GFLOP/s)(?![\w/])|\b0\.\d{3}\b|\b\d+(\.\d+)?x\b")
"""A time, a share, a speed-up or a score written as a number: what goes stale in a comment."""
NOT_MEASURED_NUMBERS = ("95%", "'42 s'", "'3 min 05 s'", "'15% of'")
"""Numbers that are no measurement: the bootstrap interval's level, duration()'s format examples, and cli.py's
example of a '%' in a help text."""


def _prose(path: Path):
    """(line, text) of every comment and docstring in a file."""
    import io
    import tokenize

    source = path.read_text()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            yield tok.start[0], tok.string
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if isinstance(body, list):
            for first, nxt in zip(body, body[1:] + [None]):
                # a docstring: the first statement of a body, or a string right after an assignment (field docs)
                if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(
                        first.value.value, str):
                    yield first.lineno, first.value.value


def test_comments_and_help_texts_carry_no_benchmark_numbers():
    found = []
    for path in sorted([*(ROOT / "lft_core").glob("*.py"), *(ROOT / "ui").glob("*.py"), ROOT / "app.py"]):
        for line, text in _prose(path):
            for allowed in NOT_MEASURED_NUMBERS:
                text = text.replace(allowed, "")
            if MEASURED.search(text):
                found.append(f"{path.relative_to(ROOT)}:{line}: {MEASURED.search(text).group(0)}")
    for name, spec in lft_core.RunConfig.__dataclass_fields__.items():
        if MEASURED.search(spec.metadata.get("help", "")):
            found.append(f"RunConfig.{name} help: {MEASURED.search(spec.metadata['help']).group(0)}")
    assert found == [], "move these to benchmarks/results/defaults.md and point there"
