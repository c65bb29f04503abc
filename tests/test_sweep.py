"""Sweeps and the reference baselines."""

import json
from pathlib import Path

import pytest
import yaml

from lft_core import LftError, RunConfig, load_data
from lft_core.baselines import tfidf_logreg, zero_shot
from lft_core.stats import bootstrap_ci, mcnemar_exact
from lft_core.sweep import load_sweep, run_sweep


def test_sweep_runs_reports_and_skips_finished_runs(tiny_models, keyword_csv, tmp_path):
    spec = {"name": "t", "base": {"model": tiny_models["bert"], "dataset": keyword_csv, "epochs": 1, "max_length": 32},
            "grid": {"method": ["lora", "head-only"]}, "seeds": [1, 2]}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "sweep"
    result = run_sweep(str(path), output=str(out))
    table = result["table"]
    assert sorted(table["run"]) == ["head-only-seed1", "head-only-seed2", "lora-seed1", "lora-seed2"]
    assert {"accuracy", "macro_f1"} <= set(table.columns)
    assert {"ci_low", "ci_high", "p_vs_base", "p_vs_best", "trainable_pct", "adapter_mb", "tokens_per_s"} <= set(table.columns)
    markdown = (out / "sweep_report.md").read_text()
    assert "tfidf-logreg (reference)" in markdown and "zero-shot (reference)" in markdown and "Cheapest within" in markdown
    html = (out / "sweep_report.html").read_text()
    assert "Pareto frontier" in html and "Plotly.newPlot" in html
    # the split is fixed across seeds: every run was scored on the same test rows
    sizes = {json.loads((out / run / "report.json").read_text())["data"]["test"] for run in table["run"]}
    assert len(sizes) == 1
    stamps = {run: (out / run / "report.json").stat().st_mtime for run in table["run"]}
    run_sweep(str(path), output=str(out))  # started again: nothing reruns
    assert stamps == {run: (out / run / "report.json").stat().st_mtime for run in table["run"]}


def test_sweep_file_errors(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("base: {dataset: bbc-news}\nrunz: []\n")
    with pytest.raises(LftError, match="unknown keys"):
        load_sweep(path)
    path.write_text("base: {datset: bbc-news}\nruns: [{method: lora}]\n")
    with pytest.raises(LftError, match="did you mean 'dataset'"):
        load_sweep(path)
    path.write_text("base: {dataset: bbc-news}\ngrid: {method: lora}\n")
    with pytest.raises(LftError, match="grid.method must be a list"):
        load_sweep(path)
    path.write_text("base: {dataset: bbc-news, learning_rate: 1e-3}\nruns: [{method: lora}, {method: lorax}]\n")
    with pytest.raises(LftError, match="run lorax-seed42: invalid config: unknown method 'lorax'"):
        load_sweep(path)


def test_shipped_sweep_is_valid():
    name, configs, _ = load_sweep(Path(__file__).resolve().parents[1] / "examples" / "sweep_methods.yaml")
    methods = {c["method"] for c in configs}
    assert len(methods) >= 6 and {"full", "head-only", "lora"} <= methods


def test_statistics():
    import numpy as np

    a = np.array([True] * 90 + [False] * 10)
    low, high = bootstrap_ci(a)
    assert low < 0.9 < high
    assert mcnemar_exact(a, a) == 1.0
    b = np.array([False] * 50 + [True] * 50)
    assert mcnemar_exact(a, b) < 0.01


def test_tfidf_reference_on_bbc_news():
    data = load_data(RunConfig(dataset="bbc-news"))
    metrics = tfidf_logreg(data)
    assert metrics.accuracy >= 0.95  # a strong classical reference on this corpus


def test_zero_shot_encoder_and_decoder(keyword_csv, tiny_models):
    data = load_data(RunConfig(dataset=keyword_csv))
    encoder = zero_shot("minilm", data, 32)
    assert 0 <= encoder.accuracy <= 1 and encoder.n == len(data["test"])
    decoder = zero_shot(tiny_models["gpt2"], data, 32)
    assert decoder.n == len(data["test"])


def test_a_run_entry_can_carry_its_own_seeds(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("base: {dataset: bbc-news}\nruns: [{method: lora, seeds: [1, 2]}, {method: full}]\nseeds: [3]\n")
    _, configs, _ = load_sweep(path)
    assert [c["_name"] for c in configs] == ["lora-seed1", "lora-seed2", "full-seed3"]
    assert all("seeds" not in c for c in configs)
