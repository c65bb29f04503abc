"""Train: transformers' Trainer with dynamic padding, batches in a seeded random order, validation each epoch that
keeps the best epoch, checkpoints for resume, a stop flag that ends training within a step, and guards against
non-finite losses and a full disk."""

from __future__ import annotations

import collections
import contextlib
import errno
import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import DataCollatorWithPadding, PrinterCallback, Trainer, TrainerCallback, TrainingArguments

from lft_core import events
# the batch and learning-rate policy lives in batching; its names stay importable from here
from lft_core.batching import auto_batch_size, default_learning_rate, micro_batches  # noqa: F401
from lft_core.batching import world_size as _world_size
from lft_core.errors import LftError, StopRequested
from lft_core.evaluate import encode, evaluate, texts_of
from lft_core.hardware import THREADS, Compute, call_work

log = logging.getLogger("lft_core")
EARLY_LOG_STEPS = 10
"""Every one of the first steps is logged, so a loss point shows up as soon as training starts."""
LOG_EVERY_S = 2.0
"""After that, a loss point at least this often, however slow the steps (a busy shared machine)."""


@dataclass
class TrainArgs:
    """What train() needs from the run's config, and the estimates that make its time-left figure honest."""

    epochs: float
    learning_rate: float
    batch_size: int
    eval_batch_size: int | None
    max_length: int
    seed: int
    truncation: str = "head"
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    precision: str = "fp32"
    """'bf16' (autocast), 'fp16' (autocast with a gradient scaler, CUDA) or 'fp32', already resolved by
    hardware.choose_compute()"""
    attention: str | None = None
    """the attention kernel of the training forward ('eager', 'sdpa'), as calibration measured it faster here;
    None keeps the model's own"""
    pad_to_multiple_of: int | None = None
    class_weights: bool = False
    compile: bool = False
    micro_batches: int | None = None
    """length-sorted micro-batches a batch is computed in; None: micro_batches(batch_size)"""
    save_steps: int = 200
    save_total_limit: int = 2
    resume: bool = False
    progress_bar: bool = False
    validation_s: float = 0.0
    """estimated seconds of one validation pass (from the base evaluation's measured speed), until one has run"""
    after_training_s: float = 0.0
    """estimated time for saving, reloading, the final evaluation and the references, added to the time left"""
    run_started: float | None = None
    """time.time() when the run began, so progress can say what share of the whole run is done"""
    step_s: float | None = None
    """seconds a training step should take here, from the run's calibration: the ETA leans on it until enough
    steps have been measured"""
    report_to: list[str] = field(default_factory=list)
    """experiment trackers (transformers' report_to names) that get the loss and the validation scores"""


@dataclass
class TrainResult:
    losses: list[tuple[int, float]] = field(default_factory=list)
    """(optimizer step, training loss) at each logged step"""
    epochs: list[events.EpochRecord] = field(default_factory=list)
    """each epoch's validation, in order"""
    best_epoch: int = 0
    seconds: float = 0.0
    tokens: int = 0
    """real (non-pad) tokens trained on, all epochs"""
    steps: int = 0
    precision: str = "fp32"
    """compute precision of training: 'bf16', 'fp16' (autocast) or 'fp32'"""
    threads: dict = field(default_factory=dict)
    """what the thread governor chose while training (hardware.ThreadGovernor.summary)"""


def tokenize(dataset, tokenizer, max_length: int, truncation: str = "head", ids: list[list[int]] | None = None):
    """Token ids without padding (the collator pads each batch to its own longest row); `ids` when the caller
    already encoded the texts."""
    from datasets import Dataset

    if ids is None:
        ids, _ = encode(tokenizer, texts_of(dataset), max_length, truncation)
    columns = {"input_ids": ids, "labels": _training_labels(dataset)}
    if getattr(ids, "token_type_ids", None) is not None:  # sentence pairs: the collator pads them too
        columns["token_type_ids"] = ids.token_type_ids
    return Dataset.from_dict(columns)


def _training_labels(dataset) -> list:
    """Class ids, or for multi-label the multi-hot float rows that the BCE loss of a sigmoid head takes."""
    feature = dataset.features["label"]
    if hasattr(feature, "names"):
        return list(dataset["label"])
    from lft_core.evaluate import multi_hot

    return multi_hot(dataset["label"], len(feature.feature.names)).tolist()


class _EpochSeededSampler(torch.utils.data.Sampler):
    """A random order that depends only on (seed, epoch), so a resumed run skips exactly the batches it had
    trained on (Trainer's sampler draws from the global RNG, which a resume restores to its mid-epoch state).

    Batches are not grouped by length: on airline-tweets, length-grouped batches were nearly single-class
    (complaints are longer), the loss cycled with the batch length and LoRA collapsed to the majority class
    (benchmarks/results/defaults.md). Dynamic padding still pads each
    batch only to its own longest text."""

    def __init__(self, size: int, seed: int, lengths: list[int] | None = None, batch_size: int = 1):
        self.size, self.seed, self.epoch = size, seed, 0
        self.lengths, self.batch_size = lengths, batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + int(self.epoch))
        order = torch.randperm(self.size, generator=generator).tolist()
        if self.lengths is not None:
            # Each batch keeps its random texts; only their order inside it changes, longest first, so its
            # micro-batches (consecutive slices) each pad to lengths close to their own.
            order = [i for start in range(0, self.size, self.batch_size)
                     for i in sorted(order[start:start + self.batch_size], key=lambda i: -self.lengths[i])]
        return iter(order)


def _epoch_order(lengths: list[int], seed: int, batch_size: int, parts: int) -> _EpochSeededSampler:
    """Training's order of the texts: random batches, each sorted longest first when it is computed in parts."""
    return _EpochSeededSampler(len(lengths), seed, lengths if parts > 1 else None, batch_size)


@contextlib.contextmanager
def attention_implementation(model, implementation: str | None):
    """Run the block with transformers' `implementation` of attention ('eager', 'sdpa'), then restore it.
    None, or a model that cannot switch, leaves the model as it is."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    before = getattr(getattr(base, "config", None), "_attn_implementation", None)
    can_switch = getattr(base, "_can_set_attn_implementation", lambda: False)()
    if not can_switch or before is None or implementation in (None, before):
        yield
        return
    base.set_attn_implementation(implementation)
    try:
        yield
    finally:
        base.set_attn_implementation(before)


def _checkpoint_note(state_dir: Path) -> str:
    steps = sorted(int(p.name.split("-")[1]) for p in state_dir.glob("checkpoint-*") if (p / "trainer_state.json").exists())
    return f"the last good checkpoint (step {steps[-1]}) is kept" if steps else "no checkpoint had been saved yet"


class _GuardedTrainer(Trainer):
    """Trainer with bf16 autocast for the training loss only, optional class weights, each forward and backward
    timed for the thread governor, and a stop at the first non-finite loss, named by its step, before it poisons
    the weights."""

    def __init__(self, *args, bf16: bool = False, class_weights: torch.Tensor | None = None, state_dir: Path,
                 train_lengths: list[int], attention: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.bf16, self.class_weights, self.state_dir = bf16, class_weights, state_dir
        self.train_lengths = train_lengths
        # Every loss here is a micro-batch mean, so Trainer must divide it by the micro-batches of a step; it
        # skips that for a model whose forward takes **kwargs, which BERT's does while ignoring them.
        self.model_accepts_loss_kwargs = False
        self.attention = attention

    def _get_train_sampler(self, *args, **kwargs):
        parts = self.args.gradient_accumulation_steps
        return _epoch_order(self.train_lengths, self.args.seed, self.args.per_device_train_batch_size * parts, parts)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # Autocast here rather than with TrainingArguments(bf16=True): that flag wraps model.forward for good,
        # so every later evaluation (and the reload check) would silently run in bf16 too. Likewise the
        # attention kernel is swapped for the training forward only; backward needs no switch.
        with torch.autocast(self.args.device.type, dtype=torch.bfloat16, enabled=self.bf16), \
                attention_implementation(self.model, self.attention):
            if self.class_weights is None:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            weights = self.class_weights.to(outputs.logits.device)
            loss = torch.nn.functional.cross_entropy(outputs.logits.float(), labels, weight=weights)
            return (loss, outputs) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        # one forward and backward: the unit the thread governor times (tokens, padding included)
        with THREADS.timed("train", call_work(inputs["input_ids"].shape)):
            loss = super().training_step(model, inputs, num_items_in_batch)
        if not torch.isfinite(loss):
            raise LftError(f"the training loss became {loss.item()} at step {self.state.global_step + 1}; the learning "
                           f"rate ({self.args.learning_rate:g}) is probably too high. {_checkpoint_note(self.state_dir)}; "
                           f"lower --learning-rate and run again")
        return loss


def _trainable(model) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


class _RunCallback(TrainerCallback):
    """Emits progress with an honest time left, validates each epoch and keeps the best epoch's weights, honours
    the stop flag within a step (no validation, one quick checkpoint to resume from)."""

    def __init__(self, model, tokenizer, data, args: TrainArgs, state_dir: Path, emit: events.Emit,
                 stop: threading.Event, result: TrainResult, is_main: bool):
        self.model, self.tokenizer, self.data, self.args = model, tokenizer, data, args
        self.state_dir, self.emit, self.stop, self.result, self.is_main = state_dir, emit, stop, result, is_main
        self.best = self._load_best()
        self.started = self.last_log = time.perf_counter()
        self.start_step, self.bar, self.first_step_end = 0, None, None
        self.step_ends: collections.deque = collections.deque(maxlen=RECENT_STEPS + 1)
        self.validation_s = args.validation_s
        self.trainer = None

    # best-epoch bookkeeping survives a resume through two small files beside the checkpoints
    def _load_best(self) -> events.EpochRecord | None:
        info = self.state_dir / "best.json"
        return events.EpochRecord.from_dict(json.loads(info.read_text())) if info.exists() else None

    def _save_best(self, epoch_info: events.EpochRecord) -> None:
        if not self.is_main:
            return
        tmp = self.state_dir / "best.safetensors.tmp"
        save_file({n: p.detach().cpu().contiguous() for n, p in _trainable(self.model).items()}, tmp)
        os.replace(tmp, self.state_dir / "best.safetensors")
        (self.state_dir / "best.json.tmp").write_text(json.dumps(epoch_info.to_dict()))
        os.replace(self.state_dir / "best.json.tmp", self.state_dir / "best.json")

    def on_train_begin(self, args, state, control, **kwargs):
        self.start_step, self.first_step_end = state.global_step, None
        self.step_ends = collections.deque(maxlen=RECENT_STEPS + 1)
        self.started = self.last_log = time.perf_counter()
        if self.args.progress_bar and self.is_main:
            import sys

            from tqdm.auto import tqdm

            # on stdout, where the event lines go, so tqdm.write keeps them off the bar; hidden when not a terminal
            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="train", unit="step",
                            file=sys.stdout, disable=None)

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        if self.first_step_end is None:
            self.first_step_end = now
        self.step_ends.append(now)
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)
        done = state.global_step - self.start_step
        if done <= EARLY_LOG_STEPS or time.perf_counter() - self.last_log >= LOG_EVERY_S:
            control.should_log = True
        if self.stop.is_set():
            control.should_training_stop = True
            control.should_save = True  # a checkpoint at this very step, so a resume loses nothing

    def eta(self, state) -> float | None:
        """Seconds left. Per step: the recent steps' pace (the last RECENT_STEPS, so a change in the machine's load
        shows within a minute), blended with the calibrated step time while few steps are measured; the first step
        is left out, as it also pays for the optimizer's creation and the first forward's warm-up."""
        done = state.global_step - self.start_step
        prior = self.args.step_s
        if (done < 2 or self.first_step_end is None) and not prior:
            return None
        ends = self.step_ends
        measured = (ends[-1] - ends[0]) / (len(ends) - 1) if len(ends) >= 2 else None
        if measured is None:
            per_step = prior
        elif prior:
            weight = min(len(ends) - 1, RECENT_STEPS) / (min(len(ends) - 1, RECENT_STEPS) + PRIOR_STEPS)
            per_step = weight * measured + (1 - weight) * prior
        else:
            per_step = measured
        epochs_left = max(0, math.ceil(self.args.epochs) - len(self.result.epochs))
        return per_step * (state.max_steps - state.global_step) + epochs_left * self.validation_s + self.args.after_training_s

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "loss" not in logs:
            return
        self.last_log = time.perf_counter()
        elapsed = time.perf_counter() - self.started
        done = max(state.global_step - self.start_step, 1)
        tokens_per_step = self.result.tokens / max(state.max_steps, 1)
        eta = self.eta(state)
        event = events.Progress(
            phase="train", step=state.global_step, total=state.max_steps, elapsed_s=round(elapsed, 1),
            eta_s=None if eta is None else round(eta, 1), loss=round(float(logs["loss"]), 5), epoch=round(state.epoch or 0, 3),
            learning_rate=float(f"{float(logs.get('learning_rate', 0.0)):.4g}"),
            tokens_per_s=round(tokens_per_step * done / max(elapsed, 1e-9)),
            run_share=run_share(self.args.run_started, eta))
        self.result.losses.append((state.global_step, event.loss))
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{event.loss:.4f}", tok_s=f"{event.tokens_per_s:.0f}")
        if self.is_main:
            self.emit(event)

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.stop.is_set():
            return  # stopping: no validation pass, the step's checkpoint is already saved
        started = time.perf_counter()
        # in the training precision and on its device, as the test scores are
        compute = Compute(args.device.type, self.args.precision)
        metrics, _ = evaluate(self.model, self.tokenizer, self.data["validation"], self.args.max_length,
                              self.args.eval_batch_size, truncation=self.args.truncation, stop=self.stop,
                              compute=compute)
        self.validation_s = time.perf_counter() - started
        epoch = int(round(state.epoch or 0))
        info = events.EpochRecord(epoch=epoch, step=state.global_step, scores=dict(metrics.scores))
        self.result.epochs.append(info)
        if self.is_main:
            _merge_epochs(self.state_dir, self.result.epochs)
        if self.best is None or metrics.accuracy > self.best.scores.get("accuracy", -1.0):
            self.best = info
            self._save_best(info)
        if self.is_main:
            self.emit(events.EpochEnd.of(info, best_epoch=self.best.epoch))
        if self.trainer is not None and self.args.report_to:  # trackers get the scores the app plots
            self.trainer.log({f"eval_{k}": float(v) for k, v in metrics.scores.items()})
        control.should_save = True  # a checkpoint at every epoch end, besides every save_steps

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()


class _GradGuard(TrainerCallback):
    def __init__(self, model, state_dir: Path):
        self.params, self.state_dir = list(_trainable(model).values()), state_dir

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        grads = [p.grad for p in self.params if p.grad is not None]
        if grads and not torch.isfinite(torch.stack([g.detach().float().norm() for g in grads])).all():
            raise LftError(f"a gradient became non-finite at step {state.global_step + 1}; the learning rate "
                           f"({args.learning_rate:g}) is probably too high. {_checkpoint_note(self.state_dir)}; lower it")


def call_shapes(lengths: list[int], batch_size: int, seed: int = 0) -> list[tuple[int, int]]:
    """(texts, padded length) of each forward call one epoch makes: the sampler's random batches, computed in
    micro-batches when the batch is large enough, each padded to its own longest text."""
    micro = micro_batches(batch_size)
    order = list(_epoch_order(lengths, seed, batch_size, micro))
    part = batch_size // micro
    calls = (order[start:start + part] for start in range(0, len(order), part))
    return [(len(call), max(lengths[i] for i in call)) for call in calls]


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    return math.ceil(n_train / (batch_size * _world_size()))


def _class_weights(labels: list[int], num_labels: int) -> torch.Tensor:
    """scikit-learn's 'balanced' weights, n / (k * count): each class adds the same total weight to the loss."""
    counts = np.bincount(labels, minlength=num_labels).astype(np.float64)
    weights = np.where(counts > 0, len(labels) / (num_labels * np.maximum(counts, 1)), 1.0)
    return torch.tensor(weights, dtype=torch.float32)


RECENT_STEPS = 30
"""The ETA's pace is that of the last this many steps."""
PRIOR_STEPS = 5
"""...and the calibrated step time counts as this many measured steps."""


def run_share(run_started: float | None, eta_s: float | None) -> float | None:
    """The share of the whole run done, by time: elapsed over elapsed plus the time left."""
    if run_started is None or eta_s is None:
        return None
    elapsed = max(time.time() - run_started, 0.0)
    return round(elapsed / max(elapsed + eta_s, 1e-9), 4)


def precision_flags(precision: str, device: str) -> dict:
    """TrainingArguments' mixed-precision flags: fp16 goes through accelerate, whose gradient scaler it needs (and
    which wraps the forward in fp16 autocast until train() unwraps it); bf16 needs no scaler, so it is our own
    autocast around the training loss only (see _GuardedTrainer.compute_loss)."""
    return {"fp16": precision == "fp16" and device == "cuda", "bf16": False}


def _training_arguments(args: TrainArgs, state_dir: Path, n_train: int) -> TrainingArguments:
    micro = args.micro_batches or micro_batches(args.batch_size)
    cuda = torch.cuda.is_available()
    return TrainingArguments(**precision_flags(args.precision, "cuda" if cuda else "cpu"),
        output_dir=str(state_dir), per_device_train_batch_size=args.batch_size // micro,
        gradient_accumulation_steps=micro, learning_rate=args.learning_rate,
        num_train_epochs=args.epochs, weight_decay=args.weight_decay,
        warmup_steps=args.warmup_ratio,  # a float below 1 is a ratio of the total steps
        lr_scheduler_type="linear",
        logging_steps=max(1, min(10, steps_per_epoch(n_train, args.batch_size) // 10)),
        logging_first_step=True, save_strategy="steps", save_steps=args.save_steps,
        save_total_limit=args.save_total_limit, eval_strategy="no", seed=args.seed, data_seed=args.seed,
        remove_unused_columns=False, report_to=args.report_to or "none", disable_tqdm=True, use_cpu=not cuda,
        dataloader_num_workers=0, logging_nan_inf_filter=False, save_only_model=False, torch_compile=args.compile)


def train(model, tokenizer, data, args: TrainArgs, state_dir: Path, emit: events.Emit = lambda e: None,
          stop: threading.Event | None = None, callbacks: list | None = None,
          train_ids: list[list[int]] | None = None) -> TrainResult:
    """Fine-tune `model` on data['train']; validate each epoch; end with the best epoch's weights loaded.

    Raises StopRequested if `stop` is set, LftError on a non-finite loss or gradient or a full disk."""
    from lft_core.runs import RunFolder

    stop = stop or threading.Event()
    state_dir.mkdir(parents=True, exist_ok=True)
    train_set = tokenize(data["train"], tokenizer, args.max_length, args.truncation, train_ids)
    lengths = [len(row) for row in train_set["input_ids"]]  # one read of the column serves the count and the sampler
    result = TrainResult(precision=args.precision, tokens=int(sum(lengths) * args.epochs))
    training_args = _training_arguments(args, state_dir, len(train_set))
    is_main = training_args.process_index == 0
    weights = _class_weights(list(data["train"]["label"]), model.config.num_labels) if args.class_weights else None
    collator = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=args.pad_to_multiple_of)
    run_callback = _RunCallback(model, tokenizer, data, args, state_dir, emit, stop, result, is_main)
    trainer = _GuardedTrainer(
        model=model, args=training_args, train_dataset=train_set, data_collator=collator,
        callbacks=[run_callback, _GradGuard(model, state_dir), *(callbacks or [])],
        bf16=result.precision == "bf16", class_weights=weights, state_dir=state_dir,
        train_lengths=lengths, attention=args.attention)
    trainer.remove_callback(PrinterCallback)  # our callback reports progress; raw log dicts are noise
    run_callback.trainer = trainer  # to log the validation scores to the trackers, as Trainer.evaluate would
    for callback in trainer.callback_handler.callbacks:
        if type(callback).__name__ == "TensorBoardCallback" and callback.logging_dir is None:
            # its default, in the state folder, goes at the end
            callback.logging_dir = str(RunFolder(state_dir.parent).logs)
    checkpoint = _resume_point(state_dir) if args.resume else None
    start = time.perf_counter()
    try:
        with _disk_full_is_user_error(state_dir):
            output = trainer.train(resume_from_checkpoint=checkpoint)
    finally:
        _unwrap_autocast(model)
    result.seconds, result.steps = time.perf_counter() - start, output.global_step
    result.threads = THREADS.summary()
    if stop.is_set():
        raise StopRequested(f"stopped by the user at step {output.global_step} of {trainer.state.max_steps}")
    best = state_dir / "best.safetensors"
    if best.exists():
        _restore(model, load_file(best))
        result.best_epoch = events.EpochRecord.from_dict(json.loads((state_dir / "best.json").read_text())).epoch
        if is_main:
            result.epochs = _merge_epochs(state_dir, result.epochs)
    return result


def _resume_point(state_dir: Path) -> str | None:
    from lft_core.runs import last_checkpoint

    checkpoint = last_checkpoint(state_dir.parent)
    if checkpoint is None:
        log.warning("no complete checkpoint in %s; training from the start", state_dir)
    return checkpoint


DISK_FULL_WORDS = ("No space left on device", "StorageFull", "os error 28", "Disk quota exceeded", "os error 122",
                   "QuotaExceeded")


def is_disk_full(exc: BaseException) -> bool:
    """Whether an error, or one it wraps, is a full disk. Checkpoints are written by safetensors, whose Rust core
    raises SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, ... })"), not
    OSError, and by torch.save, whose RuntimeError names the errno only in its text."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(word in str(exc) for word in DISK_FULL_WORDS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


@contextlib.contextmanager
def _disk_full_is_user_error(state_dir: Path):
    """A checkpoint that cannot be written is removed (Trainer would otherwise resume from half of it) and the run
    fails with one line."""
    try:
        yield
    except Exception as exc:  # OSError, or safetensors' SafetensorError / torch.save's RuntimeError wrapping it
        if not is_disk_full(exc):
            raise
        from lft_core.runs import last_checkpoint

        last_checkpoint(state_dir.parent)  # removes incomplete checkpoints
        for tmp in state_dir.glob("*.tmp"):
            tmp.unlink(missing_ok=True)
        raise LftError(f"the disk is full while writing a checkpoint into {state_dir}; "
                       f"{_checkpoint_note(state_dir)}. Free some space and resume the run") from None


def _unwrap_autocast(model) -> None:
    """accelerate wraps the forward of an fp16-trained model in autocast for good; the reload check compares fp32
    logits, so the model gets its own forward back."""
    from accelerate.utils import extract_model_from_parallel

    if "_original_forward" in model.__dict__:
        extract_model_from_parallel(model, keep_fp32_wrapper=False)


def _restore(model, state: dict[str, torch.Tensor]) -> None:
    params = _trainable(model)
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value.to(params[name].device))


def _merge_epochs(state_dir: Path, epochs: list[events.EpochRecord]) -> list[events.EpochRecord]:
    """Epoch records survive a resume through a file beside the checkpoints; keep them in order."""
    path = state_dir / "epochs.json"
    saved = [events.EpochRecord.from_dict(e) for e in (json.loads(path.read_text()) if path.exists() else [])]
    known = {e.epoch: e for e in saved}
    known.update({e.epoch: e for e in epochs})
    merged = [known[k] for k in sorted(known)]
    path.with_suffix(".tmp").write_text(json.dumps([e.to_dict() for e in merged]))
    os.replace(path.with_suffix(".tmp"), path)
    return merged
