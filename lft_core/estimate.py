"""Estimates: how long a run takes on this machine, measured here, not fitted on another CPU.

`calibrate` times a few training calls (forward and backward) and evaluation calls of the model itself, at the
data's own shapes, at each thread count the governor would consider, and fits each kind of call to
`seconds = overhead + FLOPs / rate`. `estimate_run` walks the calls a run makes (the epoch's batches as the
sampler draws them, the evaluation batches of each split) through those costs, phase by phase: scoring the base,
each epoch and its validation, saving and reloading, scoring the reloaded adapter, the TF-IDF reference.

`RunClock` keeps a run's phases and the estimates of those still to come, so every progress event can say the time
left for the whole run and the share of it that is done; measured phases replace the estimates as the run goes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np
import torch

PHASES = ("baseline", "train", "save", "evaluate", "reference")
"""The measured phases of a run after its model is loaded, in order (validation is inside train)."""


# ---------------------------------------------------------------- what a call computes


def layer_weights(config) -> tuple[int, int, int]:
    """(weights per token of the transformer layers, layers, hidden size) from a model config."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    hidden = getattr(text, "hidden_size", None) or getattr(text, "n_embd", None)
    layers = getattr(text, "num_hidden_layers", None) or getattr(text, "n_layer", None)
    inner = getattr(text, "intermediate_size", None) or getattr(text, "n_inner", None) or (4 * hidden if hidden else 0)
    if not (hidden and layers):
        raise ValueError("the model config names no hidden size or layer count")
    gated = getattr(text, "hidden_act", "") in ("silu", "swiglu") or getattr(text, "model_type", "") in (
        "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "smollm3")
    mlp = (3 if gated else 2) * hidden * inner
    return layers * (4 * hidden * hidden + mlp), layers, hidden


def call_flops(texts: int, length: int, weights: tuple[int, int, int], training: bool) -> float:
    """FLOPs of a call of `texts` rows padded to `length`: 2 per weight per token forward (and as much again
    backward, to the activations: the frozen weights get no gradient), plus attention's 4 x length x width per token
    and layer forward (twice that with backward)."""
    per_weight, layers, hidden = weights
    tokens = texts * length
    forward = tokens * (2 * per_weight + 4 * layers * length * hidden)
    return 2 * forward if training else forward


# ---------------------------------------------------------------- measured costs


@dataclass
class CallCost:
    """seconds = overhead_s + flops / flops_per_s"""

    overhead_s: float
    flops_per_s: float

    def seconds(self, flops: float) -> float:
        return self.overhead_s + flops / self.flops_per_s

    @classmethod
    def fit(cls, points: list[tuple[float, float]]) -> "CallCost":
        """Least squares over (flops, seconds) points; the overhead is never negative."""
        flops = np.array([p[0] for p in points], dtype=float)
        seconds = np.array([p[1] for p in points], dtype=float)
        if len(points) >= 2 and np.ptp(flops) > 0:
            slope, intercept = np.polyfit(flops, seconds, 1)
            if slope > 0 and intercept >= 0:
                return cls(float(intercept), float(1 / slope))
        # one shape, or a fit that makes no physical sense: all of it is throughput
        return cls(0.0, float(flops.sum() / max(seconds.sum(), 1e-9)))


@dataclass
class Calibration:
    """What a few timed calls of this model measured on this machine, now."""

    train: CallCost
    infer: CallCost
    threads: int
    """the thread count that was faster (and that the governor starts training with)"""
    per_thread_count: dict = field(default_factory=dict)
    """threads -> training seconds of the same calls, as compared"""
    load_s: float = 0.0
    """seconds the base model took to load (saving and reloading take about as long)"""
    tfidf_s_per_char: float | None = None
    seconds: float = 0.0
    """what calibrating cost"""
    precision: str = "fp32"
    device: str = "cpu"
    attention: str | None = None
    """the attention kernel the training forward uses (see attention_choice)"""
    parts: dict = field(default_factory=dict)
    """seconds of each part of the calibration itself"""


def _rows(tokenizer, texts: int, length: int, device) -> dict:
    """A batch of made-up ids of this shape (no pad or special token among them: every position is real)."""
    vocab = len(tokenizer)
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    usable = [i for i in range(min(vocab, 2000)) if i not in special][-1000:] or [0]
    index = torch.arange(texts * length).reshape(texts, length) * 7919 % len(usable)
    ids = torch.tensor(usable)[index]
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device)}


def _check_stop(stop) -> None:
    """Stop asked for while calibrating: end before the next timed call, as training does at its next step."""
    if stop is not None and stop.is_set():
        from lft_core.errors import StopRequested

        raise StopRequested("stopped by the user while timing the first steps")


def _train_call(model, batch, labels, compute, stop=None) -> float:
    _check_stop(stop)
    start = time.perf_counter()
    with compute.autocast():
        loss = model(**batch, labels=labels).loss
    loss.backward()
    if batch["input_ids"].is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


@torch.inference_mode()
def _infer_call(model, batch, compute, stop=None) -> float:
    _check_stop(stop)
    start = time.perf_counter()
    with compute.autocast():
        model(**batch).logits.float().cpu()
    return time.perf_counter() - start


def calibrate(model, tokenizer, train_shapes: list[tuple[int, int]], eval_shapes: list[tuple[int, int]], compute,
              load_s: float = 0.0, tfidf_texts: list[str] | None = None, stop=None,
              tfidf_labels: list | None = None) -> Calibration:
    """Time training calls at a small and a large shape of the epoch's own calls, at each thread count the governor
    considers (interleaved, so a change in the machine's load touches both), and evaluation calls at two of the
    evaluation batches' shapes; fit each to overhead + FLOPs / rate. The model's weights and gradients are left as
    they were (no optimizer step; gradients cleared; random state restored)."""
    from lft_core.hardware import THREADS

    CLEARLY_WORSE = THREADS.CLEARLY_WORSE

    started = time.perf_counter()
    weights = layer_weights(model.config)
    device = next(model.parameters()).device
    sizes = sorted(train_shapes, key=lambda s: s[0] * s[1])
    small, large = sizes[len(sizes) // 5], sizes[min(len(sizes) - 1, (9 * len(sizes)) // 10)]
    # a multi-label head's BCE loss takes a 0/1 row per text, not a class id
    multi = getattr(model.config, "problem_type", None) == "multi_label_classification"
    labels = {shape: torch.zeros((shape[0], model.config.num_labels) if multi else shape[0],
                                 dtype=torch.float32 if multi else torch.long, device=device) for shape in (small, large)}
    batches = {shape: _rows(tokenizer, *shape, device) for shape in (small, large)}
    candidates = THREADS.candidates_now()
    before = torch.get_num_threads()
    was_training = model.training
    model.train()
    timings: dict[int, list[tuple[float, float]]] = {n: [] for n in candidates}
    from lft_core.train import attention_implementation

    with torch.random.fork_rng(devices=[]):
        try:
            _train_call(model, batches[large], labels[large], compute, stop)  # warm-up: kernel selection, first allocations
            attention = attention_choice(model, compute)
            marks = {"warm-up and attention": time.perf_counter() - started}
            with attention_implementation(model, attention):
                _train_call(model, batches[large], labels[large], compute, stop)
                for round_, shape in enumerate((small, large, large)):
                    for threads in candidates:
                        torch.set_num_threads(threads)
                        seconds = _train_call(model, batches[shape], labels[shape], compute, stop)
                        timings[threads].append((call_flops(*shape, weights, True), seconds))
                    if round_ == 0 and len(candidates) > 1:
                        # a count far slower on the first shape (a busy machine) is not worth timing further
                        fastest = min(timings[n][0][1] for n in candidates)
                        slow = [n for n in candidates if timings[n][0][1] > CLEARLY_WORSE * fastest]
                        candidates = [n for n in candidates if n not in slow]
        finally:
            model.zero_grad(set_to_none=True)
            model.train(was_training)
    # compared on the calls every candidate made; a dropped one counts as its first call's ratio throughout
    shared = min(len(points) for points in timings.values())
    totals = {n: sum(s for _, s in points[:shared]) for n, points in timings.items()}
    best = min(totals, key=totals.get)
    speedup = {n: totals[n] / totals[best] for n in totals}
    marks["training calls"] = time.perf_counter() - started - sum(marks.values())
    # evaluation calls stall the same way under load: they start from the same count and check it themselves
    for kind in ("train", "eval"):
        THREADS.prime(kind, best, speedup)
    torch.set_num_threads(best)
    eval_sizes = sorted(eval_shapes, key=lambda s: s[0] * s[1]) or [(8, 128)]
    infer_points = []
    for shape in (eval_sizes[0], eval_sizes[-1]):
        batch = _rows(tokenizer, *shape, device)
        _infer_call(model, batch, compute, stop)
        infer_points.append((call_flops(*shape, weights, False), _infer_call(model, batch, compute, stop)))
    torch.set_num_threads(best if THREADS.adaptive else before)
    marks["scoring calls"] = time.perf_counter() - started - sum(marks.values())
    tfidf = _tfidf_rate(tfidf_texts, tfidf_labels) if tfidf_texts else None
    marks["tfidf"] = time.perf_counter() - started - sum(marks.values())
    return Calibration(train=CallCost.fit(timings[best]), infer=CallCost.fit(infer_points), threads=best,
                       per_thread_count={n: round(totals[n], 4) for n in totals}, load_s=load_s,
                       tfidf_s_per_char=tfidf, seconds=time.perf_counter() - started,
                       precision=compute.precision, device=compute.device, attention=attention,
                       parts={k: round(v, 2) for k, v in marks.items()})


def attention_choice(model, compute, time_call=None) -> str | None:
    """The attention kernel for training on a CPU in bf16: eager. SDPA's bf16 CPU backward was slower on every
    CPU measured (AVX512-BF16 Xeon and EPYC, and AMX: benchmarks/profile_step.py, separate processes with the
    kernel set at load). Timing both inside a run was tried and dropped: switching kernels back and forth in one
    process made the first kernel's calls several times slower than either measured alone, so the in-run
    comparison picked the slower one. None (keep the model's own) on a GPU, in fp32, or for a model that cannot
    switch. `time_call` is accepted for callers of the earlier, measuring version and ignored."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if compute.device != "cpu" or compute.precision != "bf16" or not getattr(
            base, "_can_set_attn_implementation", lambda: False)():
        return None
    return "eager"


def _tfidf_rate(texts: list[str], labels: list | None = None, sample: int = 300) -> float:
    """Seconds per character of training text for TF-IDF + logistic regression, timed on a sample of the texts
    with the reference's own settings and, where given, the texts' own labels (made-up labels make the regression
    slow to converge: it cost most of a calibration)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    rows = [i for i, t in enumerate(texts[:sample]) if str(t).strip()]
    if len(rows) < 10:
        return 2e-6
    picked = [str(texts[i]) for i in rows]
    given = [labels[i] for i in rows] if labels is not None and len(labels) >= len(texts[:sample]) else None
    usable = given is not None and all(isinstance(v, (int, np.integer, str)) for v in given) and len(set(given)) > 1
    targets = given if usable else np.arange(len(picked)) % 3
    start = time.perf_counter()
    try:
        features = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2).fit_transform(picked)
        LogisticRegression(max_iter=2000, C=10.0).fit(features, targets)
    except ValueError:
        return 2e-6
    return (time.perf_counter() - start) / max(sum(len(t) for t in picked), 1)


# ---------------------------------------------------------------- a run, phase by phase


@dataclass
class RunEstimate:
    """Seconds per phase of a run, as estimated before it ran."""

    baseline: float
    epoch: float
    """training calls of one epoch"""
    validation: float
    """one validation pass"""
    epochs: float
    save: float
    evaluate: float
    reference: float
    calibration: Calibration | None = None
    splits: dict = field(default_factory=dict)
    """texts per split, where known (for `describe`)"""
    startup: float = 0.0
    """reading the data, loading the model and calibrating, as an estimate's own dry run took them (0: unknown)"""
    baseline_cached: bool = False
    """the base model's scores of this split are saved already: a run reads them instead of scoring"""

    @property
    def train(self) -> float:
        return self.epoch * self.epochs + self.validation * int(np.ceil(self.epochs))

    @property
    def total(self) -> float:
        return self.baseline + self.train + self.save + self.evaluate + self.reference

    def phases(self) -> dict[str, float]:
        return {"baseline": self.baseline, "train": self.train, "save": self.save, "evaluate": self.evaluate,
                "reference": self.reference}

    def to_dict(self) -> dict:
        found = dataclasses.asdict(self)
        found.pop("calibration")
        return {**found, "train": self.train, "total": self.total}

    def describe(self) -> str:
        """The whole run's time in one line, its phases, and, where scoring the held-out splits is a large share
        of it, which cap would shorten it."""
        from lft_core.events import duration

        epochs = f"{self.epochs:g} epoch{'s' if self.epochs != 1 else ''}"
        parts = ["base scores saved earlier" if self.baseline_cached else f"base scoring {duration(self.baseline)}",
                 f"{epochs} {duration(self.epoch * self.epochs)}",
                 f"validation {duration(self.validation)} per epoch", f"save and reload {duration(self.save)}",
                 f"test scoring {duration(self.evaluate)}"]
        if self.reference >= 0.5:
            parts.append(f"TF-IDF reference {duration(self.reference)}")
        threads = self.calibration.threads if self.calibration else None
        if self.startup >= 0.5:
            parts.insert(0, f"loading and timing {duration(self.startup)}")
        text = (f"about {duration(self.total + self.startup)} for the whole run on this machine as it is now"
                + (f" ({self.calibration.precision} on {self.calibration.device}, {threads} "
                   f"thread{'s' if threads != 1 else ''})" if self.calibration else "")
                + ": " + ", ".join(parts) + ".")
        scoring = self.baseline + self.evaluate + self.validation * int(np.ceil(self.epochs))
        held_out = self.splits.get("validation", 0) + self.splits.get("test", 0)
        if self.total > 0 and scoring / (self.total + self.startup) >= SCORING_SHARE and held_out > SCORING_CAP:
            text += (f" Scoring the {self.splits.get('validation', 0):,} validation and {self.splits.get('test', 0):,} "
                     f"test texts is {scoring / (self.total + self.startup):.0%} of it: max_eval_samples={SCORING_CAP // 2} would cut "
                     f"that to about {duration(scoring * SCORING_CAP / held_out)}, with wider error bars.")
        return text


SCORING_SHARE = 0.4
"""Where scoring the held-out splits takes this share of a run or more, the estimate offers a cap."""
SCORING_CAP = 1000
"""...of this many validation and test texts together."""


def eval_shapes(lengths: list[int], batch_size: int | None = None) -> list[tuple[int, int]]:
    """(texts, padded length) of each evaluation batch (lft_core.evaluate's length-sorted batches)."""
    from lft_core.evaluate import _batches

    order = np.argsort([-n for n in lengths], kind="stable")
    return [(len(rows), int(lengths[rows[0]])) for rows in _batches(order, lengths, batch_size)] if lengths else []


def pass_seconds(cost: CallCost, shapes: list[tuple[int, int]], weights, training: bool) -> float:
    return float(sum(cost.seconds(call_flops(t, n, weights, training)) for t, n in shapes))


def estimate_run(calibration: Calibration, config, train_shapes: list[tuple[int, int]], validation_lengths: list[int],
                 test_lengths: list[int], epochs: float, eval_batch_size: int | None = None,
                 baseline_cached: bool = False, tfidf_chars: int = 0) -> RunEstimate:
    """The seconds of each phase, from the calibration's costs and the calls each phase makes."""
    weights = layer_weights(config)
    test_s = pass_seconds(calibration.infer, eval_shapes(test_lengths, eval_batch_size), weights, False)
    rate = calibration.tfidf_s_per_char or 2e-6
    return RunEstimate(
        baseline=0.0 if baseline_cached else test_s,
        epoch=pass_seconds(calibration.train, train_shapes, weights, True),
        validation=pass_seconds(calibration.infer, eval_shapes(validation_lengths, eval_batch_size), weights, False),
        epochs=epochs, save=1.0 + 1.2 * calibration.load_s, evaluate=test_s, reference=rate * tfidf_chars,
        calibration=calibration, baseline_cached=baseline_cached)


class RunClock:
    """A run's phases as they happen: each phase's estimate until it is done, then what it measured, so the time
    left and the share done cover the whole run in every phase."""

    def __init__(self, started: float | None = None):
        self.started = started or time.time()
        self.estimates: dict[str, float] = {}
        self.done: dict[str, float] = {}
        self.current: str | None = None
        self.current_started = self.started

    def plan(self, estimates: dict[str, float]) -> None:
        self.estimates.update({k: max(0.0, float(v)) for k, v in estimates.items() if k not in self.done})

    def begin(self, phase: str) -> None:
        now = time.time()
        if self.current is not None and self.current not in self.done:
            self.done[self.current] = now - self.current_started
        self.current, self.current_started = phase, now

    def finish(self, phase: str) -> None:
        if phase == self.current and phase not in self.done:
            self.done[phase] = time.time() - self.current_started

    def later_s(self, phase: str | None = None) -> float:
        """Estimated seconds of the phases after `phase` (default: the current one) not yet done."""
        phase = phase or self.current
        after = PHASES[PHASES.index(phase) + 1:] if phase in PHASES else PHASES
        return sum(self.estimates.get(p, 0.0) for p in after if p not in self.done)

    def eta(self, phase_left_s: float | None) -> float | None:
        """Seconds left in the whole run, given what is left of the current phase."""
        if phase_left_s is None:
            return None
        return max(0.0, phase_left_s) + self.later_s()

    def share(self, eta_s: float | None) -> float | None:
        if eta_s is None:
            return None
        elapsed = max(time.time() - self.started, 0.0)
        return round(elapsed / max(elapsed + eta_s, 1e-9), 4)


@contextlib.contextmanager
def phase(clock: RunClock | None, name: str):
    if clock is None:
        yield
        return
    clock.begin(name)
    try:
        yield
    finally:
        clock.finish(name)
