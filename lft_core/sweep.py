"""Sweeps: several runs (methods x hyperparameters x seeds) on one fixed data split, compared honestly.

A sweep file:

    name: methods
    base: {model: minilm, dataset: bbc-news, epochs: 1}      # RunConfig keys shared by every run
    runs:                                                     # one entry per configuration ...
      - {method: lora}
      - {method: full}
    grid: {method: [lora, dora], learning_rate: [1e-3, 4e-3]} # ... and/or a grid of them (lists)
    seeds: [42, 43]                                           # every configuration once per seed
                                                              # (a run entry's own `seeds` wins)

Every run's config is checked before anything runs. Each run is `python -m lft_core run` in its own process (so
peak memory is its own), saved under <sweep>/<run>; a run already finished is skipped when the sweep is started
again. The base model is evaluated once (engine.evaluate_base, cached by key). The report adds TF-IDF + logistic
regression and zero-shot reference rows, mean +- std across seeds, bootstrap 95% intervals, McNemar's exact test
against the base and the best run, a Pareto plot of accuracy against trainable parameters, and a recommendation."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from lft_core import events
from lft_core import report as reports
from lft_core.config import config_from_dict, read_yaml, validate
from lft_core.errors import LftError
from lft_core.evaluate import METRICS
from lft_core.runs import RunFolder, adapters_root, is_complete, safe_name, write_json
from lft_core.stats import bootstrap_ci, mcnemar_exact

SWEEP_KEYS = {"name", "base", "runs", "grid", "seeds", "reference_baselines"}


def load_sweep(path: str | Path) -> tuple[str, list[dict], bool]:
    """Expand a sweep file into run configs (dicts), each checked as a run would check it. Raises LftError naming
    every problem, before anything runs or is written."""
    path = Path(path)
    spec = read_yaml(path, "sweep file")
    unknown = set(spec) - SWEEP_KEYS
    if unknown:
        raise LftError(f"sweep file {path}: unknown keys {sorted(unknown)}; valid: {sorted(SWEEP_KEYS)}")
    base = dict(spec.get("base") or {})
    variants = [dict(v) for v in _listed(spec, "runs", path)]
    grid = spec.get("grid") or {}
    if not isinstance(grid, dict):
        raise LftError(f"sweep file {path}: grid must map keys to lists of values, e.g. grid: {{method: [lora, dora]}}")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise LftError(f"sweep file {path}: grid.{key} must be a list of values, e.g. {key}: [{values!r}] "
                           f"(got {values!r})")
    if grid:
        variants += [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    if not variants:
        raise LftError(f"sweep file {path} lists no runs: add 'runs' or 'grid'")
    seeds = _listed(spec, "seeds", path) or [base.get("seed", 42)]
    split_seed = base.get("split_seed", base.get("seed", 42))
    configs, problems = [], []
    for variant in variants:
        for seed in variant.pop("seeds", seeds):  # a run entry may carry its own seeds
            values = {"tfidf_reference": False, **base, **variant, "seed": seed, "split_seed": split_seed}
            name = _run_name(variant, seed)
            try:
                validate(config_from_dict(values, source="config"))
            except LftError as exc:
                problems.append(f"run {name}: {exc}")
                continue
            configs.append({**values, "_name": name})
    if problems:
        raise LftError(f"sweep file {path}: " + "; ".join(problems))
    return safe_name(spec.get("name") or path.stem), configs, bool(spec.get("reference_baselines", True))


def _listed(spec: dict, key: str, path: Path) -> list:
    value = spec.get(key)
    if value is not None and not isinstance(value, list):
        raise LftError(f"sweep file {path}: {key} must be a list (got {value!r})")
    return value or []


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


def run_sweep(sweep_file: str, emit: events.Emit = lambda e: None, output: str | None = None) -> dict:
    from lft_core.data import load_data
    from lft_core.engine import evaluate_base, with_max_length

    name, configs, references = load_sweep(sweep_file)
    sweep_dir = Path(output) if output else adapters_root() / f"sweep-{name}"
    first = with_max_length(config_from_dict({k: v for k, v in configs[0].items() if k != "_name"}))
    data = load_data(first)
    emit(events.Stage(stage="baseline", message=f"sweep {name}: {len(configs)} runs; evaluating the base once"))
    baseline = evaluate_base(first, data=data)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    rows = [_one_run(i, values, configs, sweep_dir, emit) for i, values in enumerate(configs, 1)]
    reference = _reference_rows(first, data) if references else []
    result = summarize(sweep_dir, rows, reference, baseline, data)
    emit(events.Stage(stage="sweep", message=result["recommendation"]))
    return result


def _one_run(i: int, values: dict, configs: list, sweep_dir: Path, emit) -> dict:
    name, values = values["_name"], {k: v for k, v in values.items() if k != "_name"}
    run_dir = sweep_dir / name
    if is_complete(run_dir):
        emit(events.Stage(stage="sweep", message=f"[{i}/{len(configs)}] {name}: done before, skipped"))
        return _row(run_dir)
    emit(events.Stage(stage="sweep", message=f"[{i}/{len(configs)}] {name}"))
    config_path = sweep_dir / f".{name}.yaml"
    config_path.write_text(yaml.safe_dump({**values, "output": str(run_dir), "overwrite": True}))
    proc = subprocess.run([sys.executable, "-m", "lft_core", "run", "--config", str(config_path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        message = next((line for line in reversed(proc.stderr.splitlines()) if line.startswith("error:")),
                       (proc.stderr.strip().splitlines() or ["failed"])[-1])
        emit(events.Warn(message=f"{name} failed: {message}"))
        return {"run": name, "method": values.get("method", "lora"), "seed": values["seed"], "failed": message}
    return _row(run_dir)


def _row(run_dir: Path) -> dict:
    rep = reports.read_report(run_dir)
    size = sum(p.stat().st_size for p in run_dir.glob("*.safetensors"))
    return {
        "run": run_dir.name, "path": str(run_dir), "method": rep.method.name, "seed": rep.config["seed"],
        "config": run_dir.name.rsplit("-seed", 1)[0],
        **{m.key: rep.finetuned.scores.get(m.key) for m in METRICS},  # None: saved before that metric existed
        "trainable": rep.parameters.trainable, "trainable_pct": rep.parameters.trainable_percent,
        "train_s": rep.timing.train_s, "tokens_per_s": rep.throughput.train_tokens_per_s,
        "peak_mb": rep.peak_memory_mb, "adapter_mb": size / 2**20,
        "reload_ok": rep.reload_check.passed, "losses": rep.history.losses,
    }


def _reference_rows(cfg, data) -> list[dict]:
    from lft_core.baselines import ReferenceUnavailable, tfidf_logreg, zero_shot

    try:
        found = [{"run": "tfidf-logreg (reference)", **_brief(tfidf_logreg(data, cfg.seed))}]
    except ReferenceUnavailable as exc:
        found = [{"run": "tfidf-logreg (reference)", "failed": f"skipped because {exc}"}]
    try:
        found.append({"run": "zero-shot (reference)", **_brief(zero_shot(cfg.model, data, cfg.max_length))})
    except (OSError, ValueError, RuntimeError) as exc:
        found.append({"run": "zero-shot (reference)", "failed": str(exc).splitlines()[0]})
    return found


def _brief(metrics) -> dict:
    return {**metrics.scores, "train_s": metrics.seconds}


def _correct(run_path: str) -> np.ndarray:
    frame = pd.read_csv(RunFolder(run_path).predictions)
    return (frame["label"] == frame["finetuned_prediction"]).to_numpy()


def summarize(sweep_dir: Path, rows: list[dict], reference: list[dict], baseline, data) -> dict:
    done = [r for r in rows if "failed" not in r]
    if not done:
        failures = "; ".join(f"{r['run']}: {r['failed']}" for r in rows)
        raise LftError(f"no run of the sweep finished ({failures})")
    labels = np.asarray(data["test"]["label"])
    base_correct = baseline.logits.argmax(-1) == labels
    for r in done:
        r["correct"] = _correct(r["path"])
        r["ci_low"], r["ci_high"] = bootstrap_ci(r["correct"])
    best = max(done, key=lambda r: r["accuracy"])
    for r in done:
        r["p_vs_base"] = mcnemar_exact(r["correct"], base_correct)
        r["p_vs_best"] = 1.0 if r is best else mcnemar_exact(r["correct"], best["correct"])
    table = pd.DataFrame([{k: v for k, v in r.items() if k not in ("correct", "losses", "path")} for r in done])
    table = table.astype({m.key: float for m in METRICS})  # a metric no run measured: NaN, not None
    means = {f"{m.key}_mean": (m.key, "mean") for m in METRICS}
    grouped = table.groupby("config").agg(method=("method", "first"), runs=("seed", "count"), **means,
                                          acc_std=("accuracy", "std"), trainable=("trainable", "first"),
                                          train_s=("train_s", "mean")).reset_index()
    grouped = grouped.sort_values("accuracy_mean", ascending=False)
    cheapest = min((r for r in done if r["accuracy"] >= best["ci_low"]), key=lambda r: (r["trainable"], r["train_s"]))
    recommendation = (f"Best: {best['run']} (accuracy {best['accuracy']:.4f}, 95% CI {best['ci_low']:.3f}-"
                      f"{best['ci_high']:.3f}). Cheapest within that interval: {cheapest['run']} "
                      f"({cheapest['trainable']:,} trainable parameters, {cheapest['train_s']:.0f} s, accuracy "
                      f"{cheapest['accuracy']:.4f}).")
    markdown = _markdown(table, grouped, reference, baseline.metrics, recommendation, [r for r in rows if "failed" in r])
    (sweep_dir / "sweep_report.md").write_text(markdown)
    figures = [reports.pareto(done), reports.error_bars(done, baseline.metrics.accuracy, reference),
               reports.loss_curves(done)]
    intro = f"<p><b>{recommendation}</b></p>" + table.drop(columns=["config"]).sort_values(
        "accuracy", ascending=False).to_html(index=False, float_format=lambda v: f"{v:.4g}")
    (sweep_dir / "sweep_report.html").write_text(reports.html_page(f"Sweep {sweep_dir.name}", intro, figures))
    write_json(sweep_dir / "sweep_results.json", {"runs": table.to_dict("records"), "reference": reference,
                                                  "base": baseline.metrics.to_dict(), "recommendation": recommendation})
    return {"sweep_dir": str(sweep_dir), "markdown": markdown, "recommendation": recommendation, "table": table}


def _score(value) -> str:
    return reports.NOT_MEASURED if value is None or pd.isna(value) else f"{value:.4f}"


def _markdown(table, grouped, reference, base_metrics, recommendation, failed) -> str:
    metric_heads = " | ".join(m.label for m in METRICS)
    lines = [f"# Sweep report\n\n{recommendation}\n",
             f"| run | method | {metric_heads} | 95% CI | trainable (%) | train s | tokens/s | peak MB | adapter MB | "
             f"McNemar p vs base | p vs best |", "|---" * (11 + len(METRICS)) + "|"]
    for _, r in table.sort_values("accuracy", ascending=False).iterrows():
        scores = " | ".join(_score(r[m.key]) for m in METRICS)
        lines.append(f"| {r['run']} | {r['method']} | {scores} | {r['ci_low']:.3f}-{r['ci_high']:.3f} | "
                     f"{r['trainable']:,} ({r['trainable_pct']:.2f}%) | {r['train_s']:.0f} | {r['tokens_per_s']:.0f} | "
                     f"{r['peak_mb']:.0f} | {r['adapter_mb']:.2f} | {r['p_vs_base']:.2g} | {r['p_vs_best']:.2g} |")
    blanks = " | " * 9
    base_scores = " | ".join(_score(base_metrics.scores.get(m.key)) for m in METRICS)
    lines.append(f"| base (fresh head) | - | {base_scores} | | 0{blanks}")
    for ref in reference:
        if "failed" in ref:
            lines.append(f"| {ref['run']} | failed: {ref['failed']} |" + " |" * (9 + len(METRICS)))
        else:
            scores = " | ".join(_score(ref.get(m.key)) for m in METRICS)
            lines.append(f"| {ref['run']} | - | {scores} | | | {ref['train_s']:.0f} |" + " |" * 5)
    lines += ["", "Mean and standard deviation across seeds:", "",
              f"| configuration | method | runs | {' | '.join(m.label + ' mean' for m in METRICS)} | accuracy std | "
              f"trainable | train s |", "|---" * (6 + len(METRICS)) + "|"]
    for _, g in grouped.iterrows():
        std = "" if pd.isna(g["acc_std"]) else f"{g['acc_std']:.4f}"
        means = " | ".join(_score(g[m.key + "_mean"]) for m in METRICS)
        lines.append(f"| {g['config']} | {g['method']} | {g['runs']} | {means} | {std} | {g['trainable']:,} | "
                     f"{g['train_s']:.0f} |")
    for r in failed:
        lines.append(f"\nFailed: {r['run']}: {r['failed']}")
    return "\n".join(lines) + "\n"
