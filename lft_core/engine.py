"""engine.run: the whole job as named steps. Check the inputs, load the data and the base model, wrap it with a
PEFT method, evaluate the base first, train, save the adapter, reload it from disk alone, evaluate it on the same
test split, and compare."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import platform
import resource
import threading
import time
from dataclasses import dataclass
from typing import Any
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

from lft_core import events, runs
from lft_core.config import RunConfig, config_from_dict, default_max_length, trackers, validate
from lft_core.data import load_data
from lft_core.errors import LftError, StopRequested, first_line
from lft_core.estimate import RunClock, RunEstimate, calibrate, estimate_run, eval_shapes, phase
from lft_core.evaluate import Metrics, encode, evaluate, label_feature, predict_logits, softmax, texts_of
from lft_core.hardware import THREADS, Compute, choose_compute, describe_machine, keep_freed_memory
from lft_core.limits import check_model_size
from lft_core.methods import MethodContext, apply_method, get_method, method_params
from lft_core.models import (is_decoder, load_base_model, load_model_config, max_positions, set_padding_side,
                             unknown_token_warning)
from lft_core.report import RunReport, build_report
from lft_core.train import (TrainArgs, TrainResult, auto_batch_size, call_shapes, default_learning_rate,
                            micro_batches, steps_per_epoch, train)

log = logging.getLogger("lft_core")
RELOAD_TOLERANCE = 1e-4
RELOAD_CHECK_ROWS = 64
PACKAGES = ("torch", "transformers", "peft", "datasets", "evaluate", "accelerate", "scikit-learn", "gradio",
            "bitsandbytes")


@dataclass
class RunResult:
    run_dir: Path
    report: RunReport | None
    """None on the non-main processes of a distributed run"""


def run(cfg: RunConfig, emit: events.Emit | None = None, stop: threading.Event | None = None,
        resume: str | None = None, progress_bar: bool = False) -> RunResult:
    """Run the whole job for one config. Raises LftError for anything the user can fix (nothing is written before
    the inputs are known to be good), StopRequested once `stop` is set (the run ends at the next step or batch)."""
    keep_freed_memory()
    job = _Job(cfg, emit, stop or threading.Event(), resume, progress_bar)
    with job.reporting():
        recipe = job.setup()
        job.open_run_folder(recipe)
        estimate = job.calibrate(recipe)
        baseline = job.evaluate_base(recipe, estimate)
        history = job.train(recipe, baseline, estimate)
        if not job.is_main:
            return RunResult(job.run_dir, None)
        saved = job.save_and_reload(recipe)
        tuned = job.evaluate_tuned(recipe, saved)
        references = job.references(recipe)
        report = job.build_report(recipe, baseline, history, saved, tuned, references, estimate)
        return job.write_reports(recipe, report, saved, baseline, tuned)


def estimate_run_time(cfg: RunConfig, emit: events.Emit | None = None) -> RunEstimate:
    """How long `run(cfg)` would take on this machine as it is now, phase by phase, without running it: the same
    checks, data, model and method as a run, then its calibration (a few timed training and evaluation calls at the
    data's own shapes). Nothing is written. Raises LftError for input a run would refuse."""
    started = time.perf_counter()
    job = _Job(dataclasses.replace(cfg, output=None, overwrite=False), emit, threading.Event(), None, False,
               dry_run=True)
    recipe = job.setup()
    estimate = job.calibrate(recipe)
    estimate.splits = {split: len(recipe.data[split]) for split in recipe.data}
    estimate.startup = time.perf_counter() - started
    return estimate


@dataclass(frozen=True)
class Recipe:
    """What every step after setup reads, made once by `_Job.setup` before the first of them runs: the final config
    (the resumed run's, checked, with its source columns and batch size filled in), where it computes, the data,
    the base and the wrapped model, and the training's own numbers."""

    cfg: RunConfig
    compute: Compute
    data: Any
    base: Any
    """models.BaseModel: the base model (wrapped in place by the method), its tokenizer and head modules"""
    model: Any
    """the base with the PEFT method applied: what trains"""
    spec: Any
    """methods.MethodSpec of cfg.method"""
    train_ids: list
    """the training texts' token ids, encoded once (the calibration and training read them)"""
    parameters: tuple[int, int]
    """trainable, total"""
    learning_rate: float
    load_s: float
    """seconds the base model took to load (a phase of the estimate)"""

    @property
    def label_names(self) -> list[str]:
        return label_feature(self.data["train"]).names


@dataclass
class Reloaded:
    """The adapter saved to the staging folder and loaded back from disk alone."""

    model: Any
    tokenizer: Any
    staging: Path
    base_ref: "runs.BaseRef"
    trained_logits: np.ndarray
    """the trained model's fp32 logits on the reload-check rows"""
    reloaded_logits: np.ndarray


@dataclass
class Tuned:
    """The reloaded adapter's test scores, and what checking the reload found."""

    metrics: Metrics
    logits: np.ndarray
    reload_check: dict
    quantization: dict | None
    """QLoRA: the same adapter on the full-precision base (report.quantization)"""


class _Job:
    """One run's life around its steps: where its events go, its clock, and its folder once it has one. The recipe
    (what the steps compute with) is made once, by `setup`."""

    def __init__(self, cfg: RunConfig, emit, stop: threading.Event, resume: str | None, progress_bar: bool,
                 dry_run: bool = False):
        self.given, self.stop, self.resume, self.progress_bar = cfg, stop, resume, progress_bar
        self.dry_run = dry_run
        self.log, self.user_emit = events.EventLog(), emit
        self.run_dir: Path | None = None
        self.is_main = True
        self.clock = RunClock()
        # a folder the app queued for this run has its log from the first event on
        given = Path(resume or cfg.output or "")
        self.reserved = given if (resume or cfg.output) and runs.RunFolder(given).status is runs.Status.QUEUED else None
        if self.reserved is not None:
            self.log.attach(runs.RunFolder(self.reserved).events)

    def say(self, event: events.Event) -> None:
        if self.is_main:
            self.log(event)
            if self.user_emit is not None:
                self.user_emit(event)

    def stage(self, stage: str, message: str) -> None:
        self.say(events.Stage(stage=stage, message=message))

    @contextlib.contextmanager
    def reporting(self):
        """Every failure becomes one Failed event (or Stopped), and the run folder, if any, says so."""
        forward = _ForwardWarnings(self.say)
        try:
            yield
        except (StopRequested, KeyboardInterrupt) as exc:
            message = str(exc) or "stopped by the user"
            resumable = self.run_dir is not None and runs.last_checkpoint(self.run_dir) is not None
            folder = self.run_dir or self.reserved
            if folder is not None and self.is_main:
                runs.RunFolder(folder).end_unfinished(runs.Status.STOPPED, message)
            self.say(events.Stopped(message=message, resumable=resumable))
            raise StopRequested(message) from None
        except BaseException as exc:
            folder = self.run_dir or self.reserved
            if folder is not None and self.is_main:
                runs.RunFolder(folder).end_unfinished(runs.Status.FAILED, first_line(exc))
            self.say(events.Failed(message=first_line(exc)))
            raise
        finally:
            forward.close()

    # ---------------------------------------------------------------- 1. setup: the recipe, cheap checks first

    def setup(self) -> Recipe:
        """The recipe, in the order that fails fastest: config values, method options, the output folder and max
        length against the model (before any data or weights are loaded); then the data, the base model, the
        training texts' encoding, and the method."""
        cfg = self.checked_config()
        compute = choose_compute(cfg.precision, bool(cfg.quantize))
        torch.manual_seed(cfg.seed)
        data = self.load_data(cfg)
        cfg = _with_source_columns(cfg, data)
        base, load_s = self.load_model(cfg, data, compute)
        train_ids, lengths = encode(base.tokenizer, texts_of(data["train"]), cfg.max_length, cfg.truncation)
        _warn_truncation(lengths, cfg.max_length)
        unknown = unknown_token_warning(base.tokenizer, train_ids, "train", list(data["train"]["text"]))
        if unknown:
            log.warning(unknown)
        if cfg.batch_size is None:  # what ran is what the run's config records, so a resume batches the same way
            cfg = dataclasses.replace(cfg, batch_size=auto_batch_size(lengths, cfg.max_length))
        spec = get_method(cfg.method)
        model, parameters = self.apply_method(cfg, spec, base, data)
        return Recipe(cfg=cfg, compute=compute, data=data, base=base, model=model, spec=spec, train_ids=train_ids,
                      parameters=parameters, load_s=load_s,
                      learning_rate=cfg.learning_rate or default_learning_rate(spec.learning_rate, cfg.batch_size))

    def checked_config(self) -> RunConfig:
        """The config to run: a resumed run's own, checked, with max_length filled in."""
        cfg = self.given
        if self.resume:
            runs.check_resumable(self.resume)
            cfg = config_from_dict(runs.read_run_config(Path(self.resume)), source=f"{self.resume}/{runs.RUN_CONFIG}")
        self.is_main = _init_distributed()
        return check_run(cfg, output=not (self.resume or self.dry_run) and self.is_main)  # the main process alone makes the folder

    def load_data(self, cfg: RunConfig):
        self.stage("data", f"loading dataset {cfg.dataset}")
        data = load_data(cfg)
        self.say(events.DataLoaded(train=len(data["train"]), validation=len(data["validation"]),
                                   test=len(data["test"]), label_names=label_feature(data["train"]).names))
        _check_stop(self.stop)
        return data

    def load_model(self, cfg: RunConfig, data, compute: Compute):
        self.stage("model", f"loading model {cfg.model}")
        started = time.perf_counter()
        base = load_base_model(cfg.model, label_feature(data["train"]).names, quantize=cfg.quantize,
                               trust_remote_code=cfg.trust_remote_code, allow_pickle=cfg.allow_pickle,
                               base_dropout=cfg.base_dropout, seed=cfg.seed)
        check_model_size(sum(p.numel() for p in base.model.parameters()))
        _set_problem_type(base.model, data, cfg)
        base.model.to(compute.device)  # scored where it trains
        return base, time.perf_counter() - started

    def apply_method(self, cfg: RunConfig, spec, base, data):
        model = base.model
        steps = steps_per_epoch(len(data["train"]), cfg.batch_size) * cfg.epochs
        ctx = MethodContext(model.config.model_type, base.head_modules, int(np.ceil(steps)),
                            model.config.get_text_config().hidden_size, is_decoder(model.config))
        if cfg.quantize:
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        model = apply_method(model, cfg.method, method_params(cfg.method, cfg.method_params), ctx)
        if ctx.is_decoder:
            set_padding_side(base.tokenizer, spec.decoder_padding)
        _smoke_test(model, base.tokenizer, cfg.method)
        trainable, total = _count_parameters(model)
        self.say(events.Parameters(trainable=trainable, total=total))
        return model, (trainable, total)

    # ---------------------------------------------------------------- 2. the run folder, once inputs are good

    def open_run_folder(self, recipe: Recipe) -> None:
        cfg = recipe.cfg
        if self.is_main and self.resume:
            self.run_dir = runs.reopen(self.resume)
        elif self.is_main:
            name = Path(cfg.output or "").name or runs.default_run_name(cfg.model, cfg.dataset, cfg.method)
            self.run_dir = runs.reserve(cfg.output, name, overwrite=cfg.overwrite)
        if self.is_main:
            folder = runs.RunFolder(self.run_dir)
            folder.state.mkdir(exist_ok=True)
            runs.write_json(folder.live_config, cfg.to_dict())
            if self.reserved is None:
                self.log.attach(folder.events)
            self.say(events.Started(run_dir=str(self.run_dir), run_name=self.run_dir.name, config=cfg.to_dict()))
        self.run_dir = Path(_broadcast(str(self.run_dir)))

    # ---------------------------------------------------------------- 3. how long it will take, measured here

    def calibrate(self, recipe: Recipe) -> RunEstimate:
        """A few timed training and evaluation calls at the data's own shapes: the thread count that is faster on
        this machine now, and the time of every phase to come, so progress can speak for the whole run."""
        cfg, data, tokenizer = recipe.cfg, recipe.data, recipe.base.tokenizer
        self.stage("calibrate", f"timing a few steps here ({recipe.compute.describe()}, up to "
                                f"{max(THREADS.candidates_now())} threads)")
        shapes = call_shapes([len(row) for row in recipe.train_ids], cfg.batch_size, cfg.seed)
        test_ids, _ = encode(tokenizer, texts_of(data["test"]), cfg.max_length, cfg.truncation)
        validation_ids, _ = encode(tokenizer, texts_of(data["validation"]), cfg.max_length, cfg.truncation)
        test_lengths = [len(r) for r in test_ids]
        texts = list(data["train"]["text"]) if cfg.tfidf_reference else None
        calibration = calibrate(recipe.model, tokenizer, shapes, eval_shapes(test_lengths, cfg.eval_batch_size),
                                recipe.compute, load_s=recipe.load_s, tfidf_texts=texts, stop=self.stop,
                                tfidf_labels=list(data["train"]["label"]) if texts else None)
        cached = baseline_cache_path(cfg, data, recipe.compute).exists()
        estimate = estimate_run(
            calibration, recipe.model.config, shapes, [len(r) for r in validation_ids], test_lengths, cfg.epochs,
            cfg.eval_batch_size, baseline_cached=cached,
            tfidf_chars=sum(len(t) for t in texts) if texts else 0)
        self.clock.plan(estimate.phases())
        self.say(events.Estimated(seconds=round(estimate.total, 1),
                                  phases={k: round(v, 1) for k, v in estimate.phases().items()},
                                  threads=calibration.threads, calibration_s=round(calibration.seconds, 2)))
        return estimate

    # ---------------------------------------------------------------- 4. the baseline

    def evaluate_base(self, recipe: Recipe, estimate: RunEstimate) -> "Baseline":
        self.stage("baseline", f"evaluating the base model on the test split ({recipe.compute.describe()})")
        with phase(self.clock, "baseline"):
            baseline = evaluate_base(recipe.cfg, base=recipe.base, data=recipe.data, stop=self.stop,
                                     compute=recipe.compute,
                                     progress=_progress_events(self.say, "baseline", self.clock))
        self.say(events.Scored(which="base", scores=baseline.metrics.scores, n=baseline.metrics.n,
                               seconds=baseline.metrics.seconds))
        # the reloaded adapter is scored on the same split, in the same precision: as long as the base took
        self.clock.plan({"evaluate": baseline.metrics.seconds or estimate.evaluate})
        return baseline

    # ---------------------------------------------------------------- 5. training

    def train(self, recipe: Recipe, baseline: "Baseline", estimate: RunEstimate) -> TrainResult:
        cfg, spec, data = recipe.cfg, recipe.spec, recipe.data
        parts = micro_batches(cfg.batch_size)
        self.stage("train", f"training {cfg.method} for {cfg.epochs:g} epoch(s), {cfg.batch_size} texts a batch"
                            + (f" (in {parts} length-sorted parts)" if parts > 1 else "")
                            + f", learning rate {recipe.learning_rate:.3g}")
        state_dir = runs.RunFolder(self.run_dir).state
        if spec.before_training is not None:
            spec.before_training(recipe.model, state_dir)
        args = TrainArgs(
            epochs=cfg.epochs, learning_rate=recipe.learning_rate, batch_size=cfg.batch_size,
            eval_batch_size=cfg.eval_batch_size, max_length=cfg.max_length, seed=cfg.seed, truncation=cfg.truncation,
            weight_decay=cfg.weight_decay, warmup_ratio=cfg.warmup_ratio, class_weights=cfg.class_weights,
            compile=cfg.compile, micro_batches=parts, precision=recipe.compute.precision,
            attention=estimate.calibration.attention if estimate.calibration else None, save_steps=cfg.save_steps,
            save_total_limit=cfg.save_total_limit, resume=bool(self.resume), progress_bar=self.progress_bar,
            validation_s=_validation_estimate(estimate, baseline, data),
            after_training_s=self.clock.later_s("train"), run_started=self.clock.started,
            step_s=estimate.epoch / max(steps_per_epoch(len(data["train"]), cfg.batch_size), 1),
            report_to=trackers(cfg.report_to))
        with phase(self.clock, "train"):
            return train(recipe.model, recipe.base.tokenizer, data, args, state_dir, self.say, self.stop,
                         callbacks=spec.callbacks(recipe.model) if spec.callbacks else None,
                         train_ids=recipe.train_ids)

    # ---------------------------------------------------------------- 6. save, and reload from disk alone

    def save_and_reload(self, recipe: Recipe) -> Reloaded:
        cfg, test, tokenizer = recipe.cfg, recipe.data["test"], recipe.base.tokenizer
        self.stage("save", "saving the adapter, then reloading it from disk")
        with phase(self.clock, "save"):
            self._progress("save", 0, 1)
            check_texts = texts_of(test)[:min(RELOAD_CHECK_ROWS, len(test))]
            # the reload check compares fp32 logits: a saved adapter that differs from the trained one moves them
            trained_logits = predict_logits(recipe.model, tokenizer, check_texts, cfg.max_length, cfg.eval_batch_size,
                                            cfg.truncation)
            staging = runs.staging_dir(self.run_dir)
            base_ref = _with_shape(runs.BaseRef.for_base(recipe.base, recipe.label_names), recipe.model, tokenizer,
                                   recipe.data, cfg, recipe.compute)
            with _disk_full_is_user_error(self.run_dir):
                runs.save_run(recipe.model, tokenizer, staging, base_ref, recipe.spec, runs.RunFolder(self.run_dir).state)
            reloaded, reloaded_tokenizer = runs.load_adapter(staging, merge=True, quantize=cfg.quantize)
            reloaded.to(recipe.compute.device)
            reloaded_logits = predict_logits(reloaded, reloaded_tokenizer, check_texts, cfg.max_length,
                                             cfg.eval_batch_size, cfg.truncation)
        return Reloaded(reloaded, reloaded_tokenizer, staging, base_ref, trained_logits, reloaded_logits)

    # ---------------------------------------------------------------- 7. the reloaded adapter, scored

    def evaluate_tuned(self, recipe: Recipe, saved: Reloaded) -> "Tuned":
        """The reloaded adapter on the test split, in the training's precision; the reload check (fp32, its first
        rows) fails the run here if the saved adapter does not reproduce the trained model."""
        cfg = recipe.cfg
        self.stage("evaluate", f"scoring the reloaded adapter on the test split ({recipe.compute.describe()})")
        with phase(self.clock, "evaluate"):
            tuned, tuned_logits = evaluate(saved.model, saved.tokenizer, recipe.data["test"], cfg.max_length,
                                           cfg.eval_batch_size, shard=False, truncation=cfg.truncation, stop=self.stop,
                                           compute=recipe.compute,
                                           progress=_progress_events(self.say, "evaluate", self.clock),
                                           threshold=saved.base_ref.threshold or 0.5)
        self.say(events.Scored(which="finetuned", scores=tuned.scores, n=tuned.n, seconds=tuned.seconds))
        reload_check = _reload_check(saved.trained_logits, saved.reloaded_logits, tuned_logits, saved.base_ref,
                                     recipe.spec)
        quantization = _full_precision_reload(saved.staging, saved.model, recipe.data["test"], cfg, tuned_logits,
                                              recipe.compute) if cfg.quantize else None
        return Tuned(tuned, tuned_logits, reload_check, quantization)

    # ---------------------------------------------------------------- 8. the references

    def references(self, recipe: Recipe) -> tuple[dict[str, Metrics], dict[str, str]]:
        """What needs no transformer: always the most frequent training class, and TF-IDF + logistic regression.
        Returns the references found and, by name, why one was skipped."""
        from lft_core.baselines import ReferenceUnavailable, majority_class, tfidf_logreg

        with phase(self.clock, "reference"):
            found, skipped = {"majority": majority_class(recipe.data)}, {}
            if not recipe.cfg.tfidf_reference:
                return found, skipped
            self.stage("reference", "TF-IDF + logistic regression on the same split")
            try:
                found["tfidf"] = tfidf_logreg(recipe.data, recipe.cfg.seed)
            except ReferenceUnavailable as exc:  # context for the verdict: never fails a trained run
                skipped["tfidf"] = str(exc)
                log.warning("the TF-IDF + logistic regression reference was skipped: %s", exc)
                return found, skipped
        self.say(events.Scored(which="tfidf", scores=found["tfidf"].scores, n=found["tfidf"].n,
                               seconds=found["tfidf"].seconds))
        return found, skipped

    # ---------------------------------------------------------------- 9. the report, then the folder made whole

    def build_report(self, recipe: Recipe, baseline: "Baseline", history: TrainResult, saved: Reloaded,
                     tuned: "Tuned", references: tuple[dict[str, Metrics], dict[str, str]],
                     estimate: RunEstimate) -> RunReport:
        cfg, spec, test = recipe.cfg, recipe.spec, recipe.data["test"]
        found, skipped = references
        return build_report(
            run_name=self.run_dir.name, config=cfg.to_dict(), base_ref=dataclasses.asdict(saved.base_ref),
            method={"name": cfg.method, "kind": "peft" if spec.is_peft else "plain",
                    "params": method_params(cfg.method, cfg.method_params), "learning_rate": recipe.learning_rate},
            data={**{s: len(recipe.data[s]) for s in recipe.data}, "label_names": recipe.label_names,
                  **_shape_facts(recipe.data)},
            base=baseline.metrics, finetuned=tuned.metrics, references=found,
            skipped_references=skipped, labels=label_matrix(test), base_logits=baseline.logits,
            tuned_logits=tuned.logits, train=history, environment=environment(), peak_memory_mb=peak_memory_mb(),
            reload_check=tuned.reload_check, parameters=recipe.parameters, quantization=tuned.quantization,
            scoring={"device": recipe.compute.device, "precision": recipe.compute.precision,
                     "why": recipe.compute.why, "reload_check_precision": "fp32"},
            estimate={"estimated": estimate.to_dict(), "measured": dict(self.clock.done),
                      "threads": THREADS.summary(), "calibration": _calibration_facts(estimate)})

    def write_reports(self, recipe: Recipe, report: RunReport, saved: Reloaded, baseline: "Baseline",
                      tuned: "Tuned") -> RunResult:
        self.stage("report", "writing the report")
        with _disk_full_is_user_error(self.run_dir):
            _write_reports(saved.staging, report, recipe.data["test"], recipe.label_names, baseline.logits,
                           tuned.logits, self.run_dir)
            runs.finalize(self.run_dir, saved.staging)
        self.say(events.Finished(run_dir=str(self.run_dir), run_name=self.run_dir.name,
                                 verdict=report.verdict.headline, base=baseline.metrics.scores,
                                 finetuned=report.finetuned.scores))
        return RunResult(self.run_dir, report)

    def _progress(self, phase_name: str, done: int, total: int, phase_left_s: float | None = None) -> None:
        """A progress event for a phase without steps of its own (saving): the whole run's time left."""
        left = phase_left_s if phase_left_s is not None else self.clock.estimates.get(phase_name, 0.0)
        eta = self.clock.eta(left)
        self.say(events.Progress(phase=phase_name, step=done, total=total, elapsed_s=0.0, eta_s=round(eta, 1),
                                 run_share=self.clock.share(eta)))


def check_run(cfg: RunConfig, output: bool = True) -> RunConfig:
    """Every check that needs neither data nor weights: the config's values, the method's options, the output
    folder, and max_length against the model's config (which also finds an unknown model name in seconds).
    Returns the config with max_length filled in where it was left to the default."""
    validate(cfg)
    if output:
        runs.check_output(cfg.output, cfg.overwrite)
    return with_max_length(cfg)


def with_max_length(cfg: RunConfig) -> RunConfig:
    """cfg with max_length set: config.default_max_length for the model; a given value above the model's limit is
    an error."""
    limit = max_positions(load_model_config(cfg.model, cfg.trust_remote_code))
    if cfg.max_length is None:
        return dataclasses.replace(cfg, max_length=default_max_length(limit))
    if limit is not None and cfg.max_length > limit:
        raise LftError(f"max_length {cfg.max_length} is more than {cfg.model} takes ({limit} tokens); use at most {limit}")
    return cfg


# ---------------------------------------------------------------- the baseline, shared by run, the app and sweeps


@dataclass
class Baseline:
    metrics: Metrics
    logits: np.ndarray
    key: str

    @property
    def seconds_per_token(self) -> float:
        return self.metrics.seconds / max(self.metrics.tokens, 1)


BASELINE_KEYS = ("model", "quantize", "max_length", "truncation", "seed", "trust_remote_code", "allow_pickle")


def baseline_key(cfg: RunConfig, data, compute: Compute | None = None) -> str:
    """What the base model's test scores depend on: the model and its head seed, quantization, max length, the
    exact test rows and labels, the device and precision they are scored in, and the library versions."""
    test = data["test"]
    compute = compute or choose_compute(cfg.precision, bool(cfg.quantize))
    content = hashlib.sha256(json.dumps([texts_of(test), list(test["label"]), label_feature(test).names]).encode())
    key = {k: getattr(cfg, k) for k in BASELINE_KEYS}
    key.update(test=content.hexdigest(), packages={p: environment()["packages"].get(p) for p in ("torch", "transformers")},
               compute=[compute.device, compute.precision])
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]


def baseline_cache() -> Path:
    return runs.adapters_root() / ".baselines"


def baseline_cache_path(cfg: RunConfig, data, compute: Compute | None = None) -> Path:
    return baseline_cache() / f"{baseline_key(cfg, data, compute)}.json"


def evaluate_base(cfg: RunConfig, base=None, data=None, stop: threading.Event | None = None,
                  progress=None, cache: bool = True, compute: Compute | None = None) -> Baseline:
    """Stage 1 alone: the base model, with its seeded fresh head, scored on the test split, on the device and in
    the precision it would train in (`compute`, by default the machine's choice for cfg.precision). Kept in
    saved_adapters/.baselines/ under a key of everything the scores depend on, so the app's Baseline tab, a run
    and a sweep evaluate a base once; a cached evaluation is used only when its key matches."""
    validate(cfg)
    cfg = with_max_length(cfg) if cfg.max_length is None else cfg
    compute = compute or choose_compute(cfg.precision, bool(cfg.quantize))
    data = data if data is not None else load_data(cfg)
    key = baseline_key(cfg, data, compute)
    path = baseline_cache() / f"{key}.json"
    if cache and path.exists():
        try:
            saved = json.loads(path.read_text())
            if saved.get("key") == key:
                return Baseline(Metrics.from_dict(saved["metrics"]), np.asarray(saved["logits"], dtype=np.float32), key)
        except (OSError, ValueError, KeyError):
            pass
    if base is None:
        base = load_base_model(cfg.model, label_feature(data["train"]).names, quantize=cfg.quantize,
                               trust_remote_code=cfg.trust_remote_code, allow_pickle=cfg.allow_pickle, seed=cfg.seed,
                               base_dropout=cfg.base_dropout)
        base.model.to(compute.device)
    metrics, logits = evaluate(base.model, base.tokenizer, data["test"], cfg.max_length, cfg.eval_batch_size,
                               truncation=cfg.truncation, stop=stop, progress=progress, compute=compute)
    if cache and _is_main():
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            runs.write_json(path, {"key": key, "metrics": metrics.to_dict(), "logits": logits.tolist()})
    return Baseline(metrics, logits, key)


# ---------------------------------------------------------------- helpers of the steps


def _check_stop(stop: threading.Event) -> None:
    if stop.is_set():
        raise StopRequested("stopped by the user before training")


def _progress_events(say, phase: str, clock: RunClock | None = None, every_s: float = 1.0):
    """A progress callback for evaluation that emits at most one event a second; with a run's clock, its time left
    and share done cover the whole run."""
    started, last = time.perf_counter(), [0.0]

    def report(done: int, total: int) -> None:
        now = time.perf_counter()
        if now - last[0] >= every_s or done == total:
            last[0] = now
            elapsed = now - started
            left = elapsed / max(done, 1) * (total - done)
            eta = clock.eta(left) if clock is not None else left
            say(events.Progress(phase=phase, step=done, total=total, elapsed_s=round(elapsed, 1),
                                eta_s=round(eta, 1), run_share=clock.share(eta) if clock is not None else None))

    return report


def _calibration_facts(estimate: RunEstimate | None) -> dict:
    found = estimate.calibration if estimate else None
    if found is None:
        return {}
    return {"seconds": round(found.seconds, 2), "parts": found.parts, "threads": found.threads,
            "per_thread_count": found.per_thread_count, "attention": found.attention, "precision": found.precision}


def _validation_estimate(estimate: RunEstimate | None, baseline: Baseline, data) -> float:
    """One validation pass: the base's measured test speed per text over the validation texts (the same model,
    precision and device); the calibration's estimate when the base was not scored here (a cached baseline)."""
    if baseline.metrics.seconds and baseline.metrics.n:
        return baseline.metrics.seconds * len(data["validation"]) / baseline.metrics.n
    return estimate.validation if estimate else 0.0


def _reload_check(trained_logits, reloaded_logits, tuned_logits, base_ref, spec) -> dict:
    """The reloaded adapter's fp32 logits on the first test rows against the trained model's; and how often the
    scoring precision's predictions on those rows agree with fp32's."""
    rows = len(trained_logits)
    diff = float(np.abs(reloaded_logits - trained_logits).max()) if rows else 0.0
    if diff > RELOAD_TOLERANCE:
        raise RuntimeError(f"reload check failed: the reloaded adapter's test logits differ from the trained "
                           f"model's by {diff:.3g} (> {RELOAD_TOLERANCE}); the saved adapter does not reproduce "
                           f"what was evaluated")
    agree = float(np.mean(tuned_logits[:rows].argmax(-1) == reloaded_logits.argmax(-1))) if rows else 1.0
    loaded_with = ("PeftModel.from_pretrained onto the packaged base" if base_ref.package and spec.is_peft else
                   "AutoPeftModelForSequenceClassification" if spec.is_peft else "AutoModelForSequenceClassification")
    return {"max_abs_diff": diff, "tolerance": RELOAD_TOLERANCE, "passed": True, "test_rows": rows,
            "precision": "fp32", "scoring_agreement": agree, "loaded_with": loaded_with}


def _set_problem_type(model, data, cfg: RunConfig) -> None:
    """A multi-label split trains a sigmoid head: transformers' models then compute the BCE loss on multi-hot labels."""
    if "label" in data["train"].features and not hasattr(data["train"].features["label"], "names"):
        if cfg.class_weights:
            raise LftError("class_weights weighs one label per text; leave it off for multi-label data")
        model.config.problem_type = "multi_label_classification"


def _with_shape(base_ref: "runs.BaseRef", model, tokenizer, data, cfg: RunConfig, compute: Compute) -> "runs.BaseRef":
    """The base reference with the head's problem type and, for multi-label, the sigmoid threshold with the best
    micro-F1 on the validation split, so that load_adapter, predict and the model card need no flags."""
    if getattr(model.config, "problem_type", None) != "multi_label_classification":
        return base_ref
    from lft_core.evaluate import multi_hot, pick_threshold, sigmoid

    validation = data["validation"]
    logits = predict_logits(model, tokenizer, texts_of(validation), cfg.max_length, cfg.eval_batch_size,
                            cfg.truncation, compute=compute)
    threshold = pick_threshold(multi_hot(validation["label"], logits.shape[1]), sigmoid(logits))
    return dataclasses.replace(base_ref, problem_type="multi_label_classification", threshold=threshold)


def label_matrix(split) -> np.ndarray:
    """A split's labels as an array: class ids, or for multi-label a 0/1 matrix with a column per label."""
    from lft_core.evaluate import multi_hot

    if hasattr(split.features["label"], "names"):
        return np.asarray(split["label"])
    return multi_hot(split["label"], len(label_feature(split).names))


def _with_source_columns(cfg: RunConfig, data) -> RunConfig:
    """cfg with the text columns load_data found, so the saved run config records the shape and predict reads the same
    columns of a new file without flags."""
    from lft_core.data import data_columns

    found = data_columns(data)
    return dataclasses.replace(cfg, text_column=cfg.text_column or found.get("text"),
                               text_pair_column=cfg.text_pair_column or found.get("text_pair"),
                               label_column=cfg.label_column or found.get("label"))


def _shape_facts(data) -> dict:
    """What the report records of the data's shape: the text columns, and for pairs how the references read them."""
    from lft_core.data import PAIR_JOIN, data_columns, seen_in_train

    found = data_columns(data)
    shape = {"text_columns": [found.get("text", "text")], "test_seen_in_train": int(seen_in_train(data, "test").sum())}
    if found.get("text_pair"):
        shape.update(text_columns=[found["text"], found["text_pair"]], pair_join=PAIR_JOIN)
    if not hasattr(data["train"].features["label"], "names"):
        shape.update(problem_type="multi_label_classification", label_column=found.get("label"),
                     label_separator=found.get("label_separator"))
    return shape


def _init_distributed() -> bool:
    """Under torchrun or accelerate launch, join the process group now (accelerate's PartialState), so that
    rank 0 can create the run folder before the others touch it; Trainer reuses the group. Returns whether this
    is the main process."""
    from accelerate import PartialState

    # cpu=True on a machine without CUDA: otherwise accelerate sees no distributed setup on CPU and every process
    # thinks it is the only one
    return PartialState(cpu=not torch.cuda.is_available()).is_main_process


def _is_main() -> bool:
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return True
    from accelerate import PartialState

    return PartialState().is_main_process


def _broadcast(value):
    """The main process's value on every process (the run folder's path)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return value
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    holder = broadcast_object_list([value], from_process=0)
    PartialState().wait_for_everyone()  # the folder exists before any process writes checkpoints into it
    return holder[0]


def _warn_truncation(lengths: list[int], max_length: int) -> None:
    longer = sum(n > max_length for n in lengths)
    if longer:
        log.warning("%d of %d training texts (%.0f%%) are longer than max_length=%d tokens and are truncated",
                    longer, len(lengths), 100 * longer / len(lengths), max_length)


def _smoke_test(model, tokenizer, method: str) -> None:
    """One tiny forward pass, so a method the model cannot take fails now with one line, not mid-training."""
    batch = tokenizer(["a short text", "another, slightly longer text"], padding=True, return_tensors="pt")
    batch = {k: v.to(next(model.parameters()).device) for k, v in batch.items()}
    try:
        with torch.no_grad():
            model(**batch)
    except Exception as exc:  # peft and transformers raise many types here
        raise LftError(f"method '{method}' does not work with this model: {first_line(exc)}") from None


def _count_parameters(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


@contextlib.contextmanager
def _disk_full_is_user_error(run_dir: Path):
    """Outputs are staged, then renamed into place: a full disk leaves what the folder held before intact."""
    from lft_core.train import is_disk_full

    try:
        yield
    except Exception as exc:  # safetensors raises SafetensorError, not OSError, for a full disk
        if not is_disk_full(exc):
            raise
        import shutil

        shutil.rmtree(runs.RunFolder(run_dir).staging, ignore_errors=True)
        raise LftError(f"the disk is full while saving to {run_dir}; nothing in that folder was replaced. "
                       f"Free some space and run again") from None


def _full_precision_reload(staging: Path, quantized, test, cfg, quantized_logits, compute: Compute) -> dict:
    """QLoRA: the same adapter on the full-precision base, and the weight memory quantization saved."""
    full, tokenizer = runs.load_adapter(staging, merge=True)
    full.to(compute.device)
    metrics, logits = evaluate(full, tokenizer, test, cfg.max_length, cfg.eval_batch_size, shard=False,
                               truncation=cfg.truncation, compute=compute)
    return {"mode": cfg.quantize, "weight_mb_quantized": quantized.get_memory_footprint() / 2**20,
            "weight_mb_full_precision": full.get_memory_footprint() / 2**20,
            "full_precision_reload_accuracy": metrics.accuracy,
            "full_precision_max_abs_diff": float(np.abs(logits - quantized_logits).max())}


def _write_reports(staging: Path, report: RunReport, test, names, base_logits, tuned_logits, run_dir: Path) -> None:
    from lft_core import report as reports

    staged = runs.RunFolder(staging)  # the run folder's layout, moved in by runs.finalize
    runs.write_json(staged.report, report.to_dict())
    staged.report_md.write_text(reports.report_markdown(report))
    staged.report_html.write_text(reports.report_html(report))
    staged.model_card.write_text(reports.model_card(report))
    staged.saved_config.write_text(runs.RunFolder(run_dir).live_config.read_text())
    threshold = (report.finetuned.multi_label or {}).get("threshold")
    _predictions_frame(test, names, base_logits, tuned_logits, threshold).to_csv(staged.predictions, index=False)


def _predictions_frame(test, names, base_logits, tuned_logits, threshold: float | None = None):
    import pandas as pd

    if not hasattr(test.features["label"], "names"):
        return _multi_label_predictions(test, names, base_logits, tuned_logits, threshold or 0.5)

    base_probs, tuned_probs = softmax(base_logits), softmax(tuned_logits)
    labels = np.asarray(test["label"])
    rows = np.arange(len(labels))
    return pd.DataFrame({
        "text": list(test["text"]), **({"text_pair": list(test["text_pair"])} if "text_pair" in test.column_names else {}),
        "label": [names[i] for i in labels],
        "base_prediction": [names[i] for i in base_logits.argmax(-1)],
        "finetuned_prediction": [names[i] for i in tuned_logits.argmax(-1)],
        "base_true_prob": base_probs[rows, labels].round(4), "finetuned_true_prob": tuned_probs[rows, labels].round(4),
    })


LABEL_JOIN = ";"
"""How the test predictions file and predict write a label set in one cell."""


def _multi_label_predictions(test, names, base_logits, tuned_logits, threshold: float):
    """A multi-label test row: its label set, both models' predicted sets (the base at 0.5, its head untrained), and
    each model's mean probability of the right decision over all labels."""
    import pandas as pd

    from lft_core.evaluate import multi_hot, sigmoid

    truth = multi_hot(test["label"], len(names)).astype(bool)
    base_probs, tuned_probs = sigmoid(base_logits), sigmoid(tuned_logits)

    def sets(matrix):
        return [LABEL_JOIN.join(n for n, on in zip(names, row) if on) for row in matrix]

    def right(probs):
        return np.where(truth, probs, 1 - probs).mean(1).round(4)

    return pd.DataFrame({
        "text": list(test["text"]), **({"text_pair": list(test["text_pair"])} if "text_pair" in test.column_names else {}),
        "label": sets(truth), "base_prediction": sets(base_probs >= 0.5),
        "finetuned_prediction": sets(tuned_probs >= threshold),
        "base_true_prob": right(base_probs), "finetuned_true_prob": right(tuned_probs),
    })


def peak_memory_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    if torch.cuda.is_available():
        peak = max(peak, torch.cuda.max_memory_allocated() / 2**20)
    return peak


def environment() -> dict:
    found = {}
    for package in PACKAGES:
        try:
            found[package] = version(package)
        except Exception:
            continue
    return {"python": platform.python_version(), "platform": platform.platform(), "packages": found,
            "threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(), "machine": describe_machine()}


class _ForwardWarnings(logging.Handler):
    """lft_core warnings (truncation, merged labels, classes too small to split) become events while a run lasts."""

    def __init__(self, say):
        super().__init__(logging.WARNING)
        self.say = say
        log.addHandler(self)

    def emit(self, record):
        self.say(events.Warn(message=record.getMessage()))

    def close(self):
        log.removeHandler(self)
        super().close()
