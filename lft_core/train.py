"""Train: transformers' Trainer with dynamic padding, length-grouped batches, per-epoch validation that keeps
the best epoch, checkpoints for resume, a stop flag, and a guard against non-finite losses."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

from lft_core.errors import LftError
from lft_core.evaluate import evaluate

log = logging.getLogger("lft_core")
Emit = Callable[[dict], None]


class StopRequested(Exception):
    """Training was stopped by the user; nothing is saved as a finished adapter."""


@dataclass
class TrainResult:
    losses: list[tuple[int, float]] = field(default_factory=list)
    """(optimizer step, training loss) at each log step"""
    epochs: list[dict] = field(default_factory=list)
    """per epoch: epoch, step, validation accuracy and macro-F1"""
    best_epoch: int = 0
    seconds: float = 0.0
    tokens: int = 0
    """real (non-pad) tokens trained on, all epochs"""
    steps: int = 0
    precision: str = "fp32"
    """compute precision of training: 'bf16' (autocast) or 'fp32'"""


def tokenize(dataset, tokenizer, max_length: int):
    """Token ids without padding (the collator pads each batch to its own longest row) plus their lengths."""

    def encode(batch):
        ids = tokenizer(batch["text"], truncation=True, max_length=max_length)["input_ids"]
        return {"input_ids": ids, "labels": batch["label"], "length": [len(x) for x in ids]}

    return dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc=None)


class _Collator:
    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, rows):
        batch = self.tokenizer.pad([{"input_ids": r["input_ids"]} for r in rows], return_tensors="pt")
        batch["labels"] = torch.tensor([r["labels"] for r in rows])
        return batch


class _EpochSeededSampler(torch.utils.data.Sampler):
    """A random order that depends only on (seed, epoch), so a resumed run skips exactly the batches it had
    trained on (Trainer's sampler draws from the global RNG, which a resume restores to its mid-epoch state).

    Batches are not grouped by length: on airline-tweets, length-grouped batches were nearly single-class
    (complaints are longer), the loss cycled with the batch length and LoRA collapsed to the majority class
    (test accuracy 0.63 against 0.79 with random batches, benchmarks/results/). Dynamic padding still pads each
    batch only to its own longest text."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + int(self.epoch))
        return iter(torch.randperm(self.size, generator=generator).tolist())


class _GuardedTrainer(Trainer):
    """Stops at the first non-finite loss with the step number, before it poisons the weights."""

    def _get_train_sampler(self, *args, **kwargs):
        return _EpochSeededSampler(len(self.train_dataset), self.args.seed)

    def __init__(self, *args, bf16: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.bf16 = bf16
        # torch's CPU kernel for bf16 SDPA has a slow backward (a third of a MiniLM step); eager attention's
        # plain bf16 matmuls made the step 1.6x faster (benchmarks/bench_step.py). CUDA keeps SDPA's fused kernels.
        self.attention = "eager" if bf16 and self.args.device.type == "cpu" else None

    def compute_loss(self, model, inputs, *args, **kwargs):
        # Autocast here rather than with TrainingArguments(bf16=True): that flag wraps model.forward for good,
        # so every later evaluation (and the reload check) would silently run in bf16 too. Likewise the
        # attention kernel is swapped for the training forward only; backward needs no switch.
        with torch.autocast(self.args.device.type, dtype=torch.bfloat16, enabled=self.bf16), \
                attention_implementation(self.model, self.attention):
            return super().compute_loss(model, inputs, *args, **kwargs)

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not torch.isfinite(loss):
            raise LftError(
                f"the training loss became {loss.item()} at step {self.state.global_step + 1}; the learning rate "
                f"({self.args.learning_rate:g}) is probably too high. The last good checkpoint is kept; lower "
                f"--learning-rate and run again"
            )
        return loss


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


def _trainable(model) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


class _RunCallback(TrainerCallback):
    """Emits progress, validates each epoch and keeps the best epoch's weights, honours the stop flag."""

    def __init__(self, trainer_model, tokenizer, data, cfg, state_dir: Path, emit: Emit, stop: threading.Event,
                 result: TrainResult, tokens_per_epoch: int, progress_bar: bool, is_main: bool):
        self.model, self.tokenizer, self.data, self.cfg = trainer_model, tokenizer, data, cfg
        self.state_dir, self.emit, self.stop, self.result = state_dir, emit, stop, result
        self.tokens_per_epoch, self.is_main = tokens_per_epoch, is_main
        self.progress_bar, self.bar = progress_bar, None
        self.best = self._load_best()
        self.started = time.perf_counter()
        self.start_step = 0

    # best-epoch bookkeeping survives a resume through two small files beside the checkpoints
    def _load_best(self) -> dict:
        info = self.state_dir / "best.json"
        return json.loads(info.read_text()) if info.exists() else {"accuracy": -1.0, "epoch": 0}

    def _save_best(self, epoch_info: dict) -> None:
        if not self.is_main:
            return
        tmp = self.state_dir / "best.safetensors.tmp"
        save_file({n: p.detach().cpu().contiguous() for n, p in _trainable(self.model).items()}, tmp)
        os.replace(tmp, self.state_dir / "best.safetensors")
        (self.state_dir / "best.json.tmp").write_text(json.dumps(epoch_info))
        os.replace(self.state_dir / "best.json.tmp", self.state_dir / "best.json")

    def on_train_begin(self, args, state, control, **kwargs):
        self.start_step = state.global_step
        self.started = time.perf_counter()
        if self.progress_bar and self.is_main:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="train", unit="step")

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)
        if self.stop.is_set():
            control.should_training_stop = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "loss" not in logs:
            return
        elapsed = time.perf_counter() - self.started
        done = max(state.global_step - self.start_step, 1)
        tokens_per_step = self.tokens_per_epoch / max(state.max_steps / max(args.num_train_epochs, 1e-9), 1)
        event = {
            "event": "progress", "step": state.global_step, "total": state.max_steps,
            "epoch": round(state.epoch or 0, 3), "loss": round(float(logs["loss"]), 5),
            "learning_rate": float(f"{float(logs.get('learning_rate', 0.0)):.4g}"),
            "tokens_per_s": round(tokens_per_step * done / max(elapsed, 1e-9)),
            "eta_s": round(elapsed / done * (state.max_steps - state.global_step), 1),
        }
        self.result.losses.append((state.global_step, event["loss"]))
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{event['loss']:.4f}", tok_s=f"{event['tokens_per_s']:.0f}")
        if self.is_main:
            self.emit(event)

    def on_epoch_end(self, args, state, control, **kwargs):
        metrics, _ = evaluate(self.model, self.tokenizer, self.data["validation"], self.cfg.max_length,
                              self.cfg.eval_batch_size)
        epoch = int(round(state.epoch or 0))
        info = {"epoch": epoch, "step": state.global_step, "accuracy": metrics.accuracy,
                "macro_f1": metrics.macro_f1}
        self.result.epochs.append(info)
        if self.is_main:
            _merge_epochs(self.state_dir, self.result.epochs)
        if metrics.accuracy > self.best["accuracy"]:
            self.best = info
            self._save_best(info)
        if self.is_main:
            self.emit({"event": "epoch", **info, "best_epoch": self.best["epoch"]})
        control.should_save = True  # a checkpoint at every epoch end, besides every save_steps

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()


class _AdaLoraCallback(TrainerCallback):
    """AdaLoRA reallocates ranks between optimizer.step() and zero_grad(), as its docs require."""

    def __init__(self, model):
        self.model = model

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.model.base_model.update_and_allocate(state.global_step)


class _GradGuard(TrainerCallback):
    def __init__(self, model):
        self.params = list(_trainable(model).values())

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        grads = [p.grad for p in self.params if p.grad is not None]
        if grads and not torch.isfinite(torch.stack([g.detach().float().norm() for g in grads])).all():
            raise LftError(
                f"a gradient became non-finite at step {state.global_step + 1}; the learning rate "
                f"({args.learning_rate:g}) is probably too high. The last good checkpoint is kept; lower it"
            )


def last_good_checkpoint(folder: Path) -> str | None:
    """The newest checkpoint that finished writing (trainer_state.json is written last). Incomplete ones,
    left by a kill mid-save, are removed so Trainer never resumes from them."""
    if not folder.is_dir():
        return None
    found = []
    for child in folder.iterdir():
        if child.is_dir() and child.name.startswith("checkpoint-"):
            if (child / "trainer_state.json").exists():
                found.append((int(child.name.split("-")[1]), child))
            else:
                shutil.rmtree(child, ignore_errors=True)
    return str(max(found)[1]) if found else None


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return math.ceil(n_train / (batch_size * world))


def train(model, tokenizer, data, cfg, run_dir: Path, learning_rate: float, emit: Emit,
          stop: threading.Event | None = None, resume: bool = False, progress_bar: bool = False,
          adalora: bool = False) -> TrainResult:
    """Fine-tune `model` on data['train']; validate each epoch; end with the best epoch's weights loaded.

    Raises StopRequested if `stop` is set, LftError on a non-finite loss or gradient.
    """
    stop = stop or threading.Event()
    state_dir = run_dir / "checkpoints"
    state_dir.mkdir(parents=True, exist_ok=True)
    train_set = tokenize(data["train"], tokenizer, cfg.max_length)
    result = TrainResult()
    tokens_per_epoch = int(sum(train_set["length"]))
    cuda = torch.cuda.is_available()
    args = TrainingArguments(
        output_dir=str(state_dir),
        per_device_train_batch_size=cfg.batch_size,
        learning_rate=learning_rate,
        num_train_epochs=cfg.epochs,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_ratio,  # a float below 1 is a ratio of the total steps
        lr_scheduler_type="linear",
        logging_steps=max(1, min(10, steps_per_epoch(len(train_set), cfg.batch_size) // 10)),
        logging_first_step=True,  # the app shows a first loss point as soon as training starts
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        eval_strategy="no",
        seed=cfg.seed,
        data_seed=cfg.seed,
        remove_unused_columns=False,
        report_to="none",
        disable_tqdm=True,
        use_cpu=not cuda,
        dataloader_num_workers=0,
        logging_nan_inf_filter=False,
        save_only_model=False,
    )
    is_main = args.process_index == 0
    callbacks = [_RunCallback(model, tokenizer, data, cfg, state_dir, emit, stop, result, tokens_per_epoch,
                              progress_bar, is_main), _GradGuard(model)]
    if adalora:
        callbacks.append(_AdaLoraCallback(model))
    result.precision = training_precision(cfg.precision, cfg.quantize)
    trainer = _GuardedTrainer(model=model, args=args, train_dataset=train_set, data_collator=_Collator(tokenizer),
                              callbacks=callbacks, bf16=result.precision == "bf16")
    trainer.remove_callback(PrinterCallback)  # our callback reports progress; raw log dicts are noise
    checkpoint = last_good_checkpoint(state_dir) if resume else None
    if resume and checkpoint is None:
        log.warning("no complete checkpoint in %s; training from the start", state_dir)
    start = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=checkpoint)
    result.seconds = time.perf_counter() - start
    result.steps = output.global_step
    result.tokens = int(tokens_per_epoch * cfg.epochs)
    if stop.is_set():
        raise StopRequested(f"stopped by the user at step {output.global_step}")
    best = state_dir / "best.safetensors"
    if best.exists():
        _restore(model, load_file(best))
        result.best_epoch = json.loads((state_dir / "best.json").read_text())["epoch"]
        if is_main:
            result.epochs = _merge_epochs(state_dir, result.epochs)
    return result


def native_bf16() -> bool:
    """bf16 matmuls in hardware: a CUDA GPU with bf16, or a CPU with AVX512-BF16 or AMX. Elsewhere torch
    emulates bf16 (~100x slower than fp32); on this project's 2-core AVX512-BF16 machine bf16 autocast made a
    MiniLM LoRA step 1.33x faster (benchmarks/results)."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags)) and torch.backends.mkldnn.is_available()


def training_precision(requested: str, quantize: str | None) -> str:
    """'auto' picks bf16 autocast where it is native; QLoRA keeps bitsandbytes' own compute dtype."""
    if requested != "auto":
        return requested
    return "bf16" if native_bf16() and not quantize else "fp32"


def _restore(model, state: dict[str, torch.Tensor]) -> None:
    params = _trainable(model)
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value.to(params[name].device))


def _merge_epochs(state_dir: Path, epochs: list[dict]) -> list[dict]:
    """Epoch records survive a resume through a file beside the checkpoints; keep them in order."""
    path = state_dir / "epochs.json"
    known = {e["epoch"]: e for e in (json.loads(path.read_text()) if path.exists() else [])}
    known.update({e["epoch"]: e for e in epochs})
    merged = [known[k] for k in sorted(known)]
    path.with_suffix(".tmp").write_text(json.dumps(merged))
    os.replace(path.with_suffix(".tmp"), path)
    return merged
