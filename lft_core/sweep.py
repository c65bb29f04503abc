"""Sweeps: several runs (methods x hyperparameters x seeds) on one fixed data split, compared honestly.

A sweep file:

    name: methods
    base: {model: minilm, dataset: bbc-news, epochs: 1}      # RunConfig keys shared by every run
    runs:                                                     # one entry per configuration ...
      - {method: lora}
      - {method: full}
    grid: {method: [lora, dora], learning_rate: [1e-3, 4e-3]} # ... and/or a grid of them
    seeds: [42, 43]                                           # every configuration once per seed
                                                              # (a run entry's own `seeds` wins)

Each run is `python -m lft_core run` in its own process (so peak memory is its own), saved under
<sweep>/<run>; a run already finished is skipped when the sweep is started again. The base model is
evaluated once and shared. The report adds TF-IDF + logistic regression and zero-shot reference rows,
mean +- std across seeds, bootstrap 95% intervals, McNemar's exact test against the base and the best run, a
Pareto plot of accuracy against trainable parameters, and a recommendation."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import yaml

from lft_core import report as reports
from lft_core.config import RunConfig, config_from_dict, read_yaml
from lft_core.errors import LftError
from lft_core.runs import adapters_root, is_complete, read_report, safe_name, write_json

SWEEP_KEYS = {"name", "base", "runs", "grid", "seeds", "reference_baselines"}
BOOTSTRAP = 2000


def load_sweep(path: str | Path) -> tuple[str, list[dict], bool]:
    """Expand a sweep file into run configs (dicts). Raises LftError naming what is wrong."""
    path = Path(path)
    spec = read_yaml(path, "sweep file")
    unknown = set(spec) - SWEEP_KEYS
    if unknown:
        raise LftError(f"sweep file {path}: unknown keys {sorted(unknown)}; valid: {sorted(SWEEP_KEYS)}")
    base = dict(spec.get("base") or {})
    variants = [dict(v) for v in spec.get("runs") or []]
    grid = spec.get("grid") or {}
    if grid:
        keys = list(grid)
        variants += [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]
    if not variants:
        raise LftError(f"sweep file {path} lists no runs: add 'runs' or 'grid'")
    seeds = spec.get("seeds") or [base.get("seed", 42)]
    split_seed = base.get("split_seed", base.get("seed", 42))
    configs = []
    for variant in variants:
        for seed in variant.pop("seeds", seeds):  # a run entry may carry its own seeds
            values = {**base, **variant, "seed": seed, "split_seed": split_seed}
            config_from_dict(values, source=str(path))  # unknown keys fail here, before anything runs
            configs.append({**values, "_name": _run_name(variant, seed)})
    return safe_name(spec.get("name") or path.stem), configs, bool(spec.get("reference_baselines", True))


def _run_name(variant: dict, seed: int | None) -> str:
    """Named by what varies between runs: the method, the variant's other keys, the seed."""
    parts = [str(variant.get("method", "lora"))]
    for key, value in sorted(variant.items()):
        if key == "method_params":
            parts += [f"{k}{v}" for k, v in sorted(value.items())]
        elif key != "method":
            parts.append(f"{key}{value}")
    if seed is not None:
        parts.append(f"seed{seed}")
    return safe_name("-".join(parts))


def _shared_base(values: dict, sweep_dir: Path) -> tuple[Path, object, dict]:
    """Evaluate the base model once for the whole sweep; also return the data and reference rows' inputs."""
    from lft_core.data import load_data
    from lft_core.evaluate import evaluate
    from lft_core.models import load_base_model

    cfg = RunConfig(**values)
    data = load_data(cfg)
    path = sweep_dir / "base_eval.json"
    if not path.exists():
        names = data["train"].features["label"].names
        base = load_base_model(cfg.model, names, seed=cfg.split_seed or cfg.seed)
        metrics, logits = evaluate(base.model, base.tokenizer, data["test"], cfg.max_length, cfg.eval_batch_size)
        write_json(path, {"metrics": metrics.to_dict(), "logits": logits.tolist()})
    return path, data, cfg


def run_sweep(sweep_file: str, emit: Callable[[dict], None] = lambda e: None, output: str | None = None) -> dict:
    name, configs, references = load_sweep(sweep_file)
    sweep_dir = Path(output) if output else adapters_root() / f"sweep-{name}"
    sweep_dir.mkdir(parents=True, exist_ok=True)
    emit({"event": "stage", "stage": "baseline", "message": f"sweep {name}: {len(configs)} runs; evaluating the base once"})
    base_path, data, first = _shared_base({k: v for k, v in configs[0].items() if k != "_name"}, sweep_dir)
    rows = []
    for i, values in enumerate(configs, 1):
        name, values = values["_name"], {k: v for k, v in values.items() if k != "_name"}
        run_dir = sweep_dir / name
        if is_complete(run_dir):
            emit({"event": "stage", "stage": "sweep", "message": f"[{i}/{len(configs)}] {run_dir.name}: done before, skipped"})
        else:
            emit({"event": "stage", "stage": "sweep", "message": f"[{i}/{len(configs)}] {run_dir.name}"})
            config_path = sweep_dir / f".{run_dir.name}.yaml"
            config_path.write_text(yaml.safe_dump({**values, "output": str(run_dir), "overwrite": True}))
            proc = subprocess.run([sys.executable, "-m", "lft_core", "run", "--config", str(config_path),
                                   "--base-eval", str(base_path)], capture_output=True, text=True)
            if proc.returncode != 0:
                message = (proc.stderr.strip().splitlines() or ["failed"])[-1]
                emit({"event": "warning", "message": f"{run_dir.name} failed: {message}"})
                rows.append({"run": run_dir.name, "method": values.get("method", "lora"), "seed": values["seed"],
                             "failed": message})
                continue
        rows.append(_row(run_dir, values))
    reference = _reference_rows(first, data) if references else []
    result = summarize(sweep_dir, rows, reference, json.loads(base_path.read_text())["metrics"], data)
    emit({"event": "finished", "run_dir": str(sweep_dir), "verdict": result["recommendation"]})
    return result


def _row(run_dir: Path, values: dict) -> dict:
    rep = read_report(run_dir)
    size = sum(p.stat().st_size for p in run_dir.glob("*.safetensors"))
    return {
        "run": run_dir.name, "path": str(run_dir), "method": rep["config"]["method"], "seed": rep["config"]["seed"],
        "config": run_dir.name.rsplit("-seed", 1)[0],
        "accuracy": rep["finetuned_metrics"]["accuracy"], "macro_f1": rep["finetuned_metrics"]["macro_f1"],
        "trainable": rep["parameters"]["trainable"], "trainable_pct": rep["parameters"]["trainable_percent"],
        "train_s": rep["timing"]["train_s"], "tokens_per_s": rep["throughput"]["train_tokens_per_s"],
        "peak_mb": rep["peak_memory_mb"], "adapter_mb": size / 2**20,
        "reload_ok": rep["reload_check"]["passed"], "losses": rep["history"]["losses"],
    }


def _reference_rows(cfg: RunConfig, data) -> list[dict]:
    from lft_core.baselines import tfidf_logreg, zero_shot

    found = [{"run": "tfidf-logreg (reference)", **_brief(tfidf_logreg(data, cfg.seed))}]
    try:
        found.append({"run": "zero-shot (reference)", **_brief(zero_shot(cfg.model, data, cfg.max_length))})
    except (OSError, ValueError, RuntimeError) as exc:
        found.append({"run": "zero-shot (reference)", "failed": str(exc).splitlines()[0]})
    return found


def _brief(metrics) -> dict:
    return {"accuracy": metrics.accuracy, "macro_f1": metrics.macro_f1, "train_s": metrics.seconds}


# ---------------------------------------------------------------- statistics


def _correct(run_path: str) -> np.ndarray:
    frame = pd.read_csv(Path(run_path) / "test_predictions.csv")
    return (frame["label"] == frame["finetuned_prediction"]).to_numpy()


def bootstrap_ci(correct: np.ndarray, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = correct[rng.integers(0, len(correct), (BOOTSTRAP, len(correct)))].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def mcnemar_exact(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided exact McNemar p-value from the discordant pairs."""
    from scipy.stats import binomtest

    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    if only_a + only_b == 0:
        return 1.0
    return float(binomtest(only_a, only_a + only_b, 0.5).pvalue)


def summarize(sweep_dir: Path, rows: list[dict], reference: list[dict], base_metrics: dict, data) -> dict:
    done = [r for r in rows if "failed" not in r]
    if not done:
        raise LftError("no run of the sweep finished; see the warnings above")
    labels = np.asarray(data["test"]["label"])
    base_correct = np.asarray(json.loads((sweep_dir / "base_eval.json").read_text())["logits"]).argmax(-1) == labels
    for r in done:
        r["correct"] = _correct(r["path"])
        r["ci_low"], r["ci_high"] = bootstrap_ci(r["correct"])
    best = max(done, key=lambda r: r["accuracy"])
    for r in done:
        r["p_vs_base"] = mcnemar_exact(r["correct"], base_correct)
        r["p_vs_best"] = 1.0 if r is best else mcnemar_exact(r["correct"], best["correct"])
    table = pd.DataFrame([{k: v for k, v in r.items() if k not in ("correct", "losses", "path")} for r in done])
    grouped = table.groupby("config").agg(method=("method", "first"), runs=("seed", "count"),
                                          acc_mean=("accuracy", "mean"), acc_std=("accuracy", "std"),
                                          f1_mean=("macro_f1", "mean"), trainable=("trainable", "first"),
                                          train_s=("train_s", "mean")).reset_index()
    grouped = grouped.sort_values("acc_mean", ascending=False)
    cheapest = min((r for r in done if r["accuracy"] >= best["ci_low"]), key=lambda r: (r["trainable"], r["train_s"]))
    recommendation = (f"Best: {best['run']} (accuracy {best['accuracy']:.4f}, 95% CI {best['ci_low']:.3f}-"
                      f"{best['ci_high']:.3f}). Cheapest within that interval: {cheapest['run']} "
                      f"({cheapest['trainable']:,} trainable parameters, {cheapest['train_s']:.0f} s, accuracy "
                      f"{cheapest['accuracy']:.4f}).")
    markdown = _markdown(table, grouped, reference, base_metrics, recommendation, [r for r in rows if "failed" in r])
    (sweep_dir / "sweep_report.md").write_text(markdown)
    figures = [pareto(done), error_bars(done, base_metrics, reference), loss_curves(done)]
    intro = f"<p><b>{recommendation}</b></p>" + table.drop(columns=["config"]).sort_values(
        "accuracy", ascending=False).to_html(index=False, float_format=lambda v: f"{v:.4g}")
    (sweep_dir / "sweep_report.html").write_text(reports.html_page(f"Sweep {sweep_dir.name}", intro, figures))
    write_json(sweep_dir / "sweep_results.json", {"runs": table.to_dict("records"), "reference": reference,
                                                  "base": base_metrics, "recommendation": recommendation})
    return {"sweep_dir": str(sweep_dir), "markdown": markdown, "recommendation": recommendation, "table": table}


def _markdown(table, grouped, reference, base_metrics, recommendation, failed) -> str:
    lines = [f"# Sweep report\n\n{recommendation}\n",
             "| run | method | accuracy | 95% CI | macro-F1 | trainable (%) | train s | tokens/s | peak MB | adapter MB | McNemar p vs base | p vs best |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in table.sort_values("accuracy", ascending=False).iterrows():
        lines.append(f"| {r['run']} | {r['method']} | {r['accuracy']:.4f} | {r['ci_low']:.3f}-{r['ci_high']:.3f} | "
                     f"{r['macro_f1']:.4f} | {r['trainable']:,} ({r['trainable_pct']:.2f}%) | {r['train_s']:.0f} | "
                     f"{r['tokens_per_s']:.0f} | {r['peak_mb']:.0f} | {r['adapter_mb']:.2f} | {r['p_vs_base']:.2g} | "
                     f"{r['p_vs_best']:.2g} |")
    lines.append(f"| base (fresh head) | - | {base_metrics['accuracy']:.4f} | | {base_metrics['macro_f1']:.4f} | 0 | | | | | | |")
    for ref in reference:
        if "failed" in ref:
            lines.append(f"| {ref['run']} | failed: {ref['failed']} | | | | | | | | | | |")
        else:
            lines.append(f"| {ref['run']} | - | {ref['accuracy']:.4f} | | {ref['macro_f1']:.4f} | | {ref['train_s']:.0f} | | | | | |")
    lines += ["", "Mean and standard deviation across seeds:", "",
              "| configuration | method | runs | accuracy mean | std | macro-F1 mean | trainable | train s |",
              "|---|---|---|---|---|---|---|---|"]
    for _, g in grouped.iterrows():
        std = "" if pd.isna(g["acc_std"]) else f"{g['acc_std']:.4f}"
        lines.append(f"| {g['config']} | {g['method']} | {g['runs']} | {g['acc_mean']:.4f} | {std} | "
                     f"{g['f1_mean']:.4f} | {g['trainable']:,} | {g['train_s']:.0f} |")
    for r in failed:
        lines.append(f"\nFailed: {r['run']}: {r['failed']}")
    return "\n".join(lines) + "\n"


def pareto(rows: list[dict]) -> go.Figure:
    """Accuracy against trainable parameters (log x), marker size by train time, the frontier drawn."""
    points = sorted(rows, key=lambda r: r["trainable"])
    frontier, best = [], -1.0
    for r in points:
        if r["accuracy"] > best:
            frontier.append(r)
            best = r["accuracy"]
    longest = max(r["train_s"] for r in rows) or 1
    fig = go.Figure()
    fig.add_scatter(x=[r["trainable"] for r in rows], y=[r["accuracy"] for r in rows], mode="markers+text",
                    text=[r["method"] for r in rows], textposition="top center", name="runs",
                    marker=dict(size=[12 + 30 * r["train_s"] / longest for r in rows], color=reports.TUNED_COLOR, opacity=0.7),
                    hovertext=[f"{r['run']}: {r['train_s']:.0f} s" for r in rows])
    fig.add_scatter(x=[r["trainable"] for r in frontier], y=[r["accuracy"] for r in frontier], mode="lines",
                    name="Pareto frontier", line=dict(color="#e15759", dash="dash"))
    fig.update_layout(title="Accuracy vs trainable parameters (marker size = train time)", xaxis_type="log",
                      xaxis_title="trainable parameters", yaxis_title="test accuracy", height=450)
    return fig


def error_bars(rows: list[dict], base_metrics: dict, reference: list[dict]) -> go.Figure:
    ordered = sorted(rows, key=lambda r: -r["accuracy"])
    fig = go.Figure(go.Bar(x=[r["run"] for r in ordered], y=[r["accuracy"] for r in ordered], marker_color=reports.TUNED_COLOR,
                           error_y=dict(type="data", symmetric=False, array=[r["ci_high"] - r["accuracy"] for r in ordered],
                                        arrayminus=[r["accuracy"] - r["ci_low"] for r in ordered]), name="runs"))
    fig.add_hline(y=base_metrics["accuracy"], line_dash="dot", annotation_text="base (fresh head)")
    for ref in reference:
        if "accuracy" in ref:
            fig.add_hline(y=ref["accuracy"], line_dash="dash", line_color="#59a14f", annotation_text=ref["run"])
    fig.update_layout(title="Test accuracy with bootstrap 95% intervals", yaxis_range=[0, 1.05], height=450)
    return fig


def loss_curves(rows: list[dict]) -> go.Figure:
    fig = go.Figure()
    for r in rows:
        if r["losses"]:
            steps, losses = zip(*r["losses"])
            fig.add_scatter(x=list(steps), y=list(losses), mode="lines", name=r["run"])
    fig.update_layout(title="Training loss", xaxis_title="optimizer step", yaxis_title="loss", height=400)
    return fig
