"""engine.run: the whole job, top to bottom. Evaluate the base model, fine-tune with a PEFT method, save the
adapter, reload it from disk alone, evaluate it on the same test split, compare and report."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import platform
import resource
import shutil
import threading
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.distributed
from transformers import set_seed

from lft_core import report as reports
from lft_core.config import RunConfig, validate
from lft_core.data import load_data
from lft_core.errors import LftError
from lft_core.evaluate import Metrics, evaluate, predict_logits, softmax
from lft_core.methods import MethodContext, apply_method, get_method, method_params
from lft_core.models import is_decoder, labelled_base, load_adapter, load_base_model, set_padding_side
from lft_core.runs import append_events, default_run_name, finalize, prepare_run_dir, set_status, staging_dir, write_json
from lft_core.train import StopRequested, steps_per_epoch, train

log = logging.getLogger("lft_core")
Emit = Callable[[dict], None]
RELOAD_TOLERANCE = 1e-4
RELOAD_CHECK_ROWS = 64
PACKAGES = ("torch", "transformers", "peft", "datasets", "accelerate", "scikit-learn", "gradio", "bitsandbytes")


@dataclass
class RunResult:
    run_dir: Path
    report: dict


def run(cfg: RunConfig, emit: Emit = lambda event: None, stop: threading.Event | None = None,
        resume: str | None = None, progress_bar: bool = False, base_eval: dict | None = None) -> RunResult:
    """Run the three stages for one config. Raises LftError for anything the user can fix (nothing is
    written before the inputs are known to be good), StopRequested if `stop` was set.

    base_eval ({"metrics": ..., "logits": ...}, as a sweep shares it) replaces the base model's evaluation."""
    forward = _forward_warnings(emit)
    try:
        return _run(cfg, forward, stop, resume, progress_bar, base_eval)
    except StopRequested:
        raise
    except BaseException as exc:  # once, here: forward.emit_event also writes events.jsonl once the folder exists
        forward.emit_event({"event": "failed", "message": _one_line(exc)})
        raise
    finally:
        forward.close()


def _one_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__


def _run(cfg: RunConfig, forward: "_forward_warnings", stop, resume, progress_bar, base_eval) -> RunResult:
    user_emit, early = forward.emit_event, []

    def emit(event: dict) -> None:  # until the run folder exists, events wait here for events.jsonl
        early.append(event)
        user_emit(event)

    forward.emit_event = emit
    validate(cfg)
    spec = get_method(cfg.method)
    set_seed(cfg.seed)
    is_main = _init_distributed()

    emit({"event": "stage", "stage": "data", "message": f"loading dataset {cfg.dataset}"})
    data = load_data(cfg)
    names = data["train"].features["label"].names
    emit({"event": "data", **{split: len(data[split]) for split in data}, "label_names": names})

    emit({"event": "stage", "stage": "model", "message": f"loading model {cfg.model}"})
    base = load_base_model(cfg.model, names, quantize=cfg.quantize, trust_remote_code=cfg.trust_remote_code,
                           allow_pickle=cfg.allow_pickle, base_dropout=cfg.base_dropout, seed=cfg.seed)
    model, tokenizer = base.model, base.tokenizer
    _check_model_size(model)
    _warn_truncation(tokenizer, data["train"]["text"], cfg.max_length)

    emit({"event": "stage", "stage": "baseline", "message": "evaluating the base model on the test split"})
    if base_eval is not None and len(base_eval["logits"]) == len(data["test"]):
        base_metrics, base_logits = Metrics(**base_eval["metrics"]), np.asarray(base_eval["logits"], dtype=np.float32)
    else:
        base_metrics, base_logits = evaluate(model, tokenizer, data["test"], cfg.max_length, cfg.eval_batch_size)
    emit({"event": "metrics", "which": "base", **base_metrics.to_dict()})

    params = method_params(cfg.method, cfg.method_params)
    model = _apply(model, tokenizer, base, cfg, data, params)
    trainable, total = _count_parameters(model)
    emit({"event": "parameters", "trainable": trainable, "total": total})
    if hasattr(model, "print_trainable_parameters") and is_main:
        model.print_trainable_parameters()

    # Only now, with every input known to be good, does anything get written.
    name = Path(resume).name if resume else default_run_name(cfg.model, cfg.dataset, cfg.method)
    run_dir = Path(resume or cfg.output or name)
    if is_main:
        run_dir = prepare_run_dir(resume or cfg.output, name, cfg.overwrite, resume=bool(resume))
        emit = _event_log(run_dir, user_emit, replay=early)
    if torch.distributed.is_initialized():
        run_dir = _broadcast(run_dir)
        torch.distributed.barrier()  # the folder exists before any rank writes checkpoints into it
    forward.emit_event = emit
    try:
        if is_main:
            write_json(run_dir / "run_config.json", cfg.to_dict())
        learning_rate = cfg.learning_rate or spec.learning_rate
        emit({"event": "stage", "stage": "train", "message": f"training {cfg.method} for {cfg.epochs} epoch(s), lr {learning_rate:g}"})
        pissa_init = _pissa_init(model, run_dir) if cfg.method == "pissa" else None
        history = train(model, tokenizer, data, cfg, run_dir, learning_rate, emit, stop, resume=bool(resume),
                        progress_bar=progress_bar, adalora=cfg.method == "adalora")
        if not is_main:
            return RunResult(run_dir, {})

        emit({"event": "stage", "stage": "save", "message": "saving the adapter, then reloading it from disk"})
        # rank 0 alone from here: no collectives
        # the reload check needs the trained model's logits on some test rows, not all: a wrong adapter changes them all
        check_rows = list(range(min(RELOAD_CHECK_ROWS, len(data["test"]))))
        memory_logits = predict_logits(model, tokenizer, data["test"]["text"][:len(check_rows)], cfg.max_length,
                                       cfg.eval_batch_size)
        staging = staging_dir(run_dir)
        with _disk_full_is_user_error(run_dir):
            reload_base = _save(model, tokenizer, base.source, staging, spec, pissa_init)
        # the reload check compares like with like: a QLoRA adapter is reloaded onto the same quantized base
        reloaded, reloaded_tokenizer = load_adapter(staging, merge=True, quantize=cfg.quantize)
        tuned_metrics, tuned_logits = evaluate(reloaded, reloaded_tokenizer, data["test"], cfg.max_length,
                                               cfg.eval_batch_size, shard=False)
        quantization = _full_precision_reload(staging, reloaded, data["test"], cfg, tuned_logits) if cfg.quantize else None
        diff = float(np.abs(tuned_logits[check_rows] - memory_logits).max()) if check_rows else 0.0
        emit({"event": "metrics", "which": "finetuned", **tuned_metrics.to_dict()})
        if diff > RELOAD_TOLERANCE:
            raise RuntimeError(
                f"reload check failed: the reloaded adapter's test logits differ from the trained model's by "
                f"{diff:.3g} (> {RELOAD_TOLERANCE}); the saved adapter does not reproduce what was evaluated"
            )
        result = dict(
            run_name=run_dir.name, base_model=base.source, reload_base=reload_base, method_kind=
            "peft" if spec.build else "plain", config=cfg.to_dict(), method_params=params,
            learning_rate=learning_rate, data={**{s: len(data[s]) for s in data}, "label_names": names},
            base_metrics=base_metrics.to_dict(), finetuned_metrics=tuned_metrics.to_dict(),
            parameters={"trainable": trainable, "total": total, "trainable_percent": 100 * trainable / total},
            timing={"train_s": history.seconds, "base_eval_s": base_metrics.seconds,
                    "finetuned_eval_s": tuned_metrics.seconds},
            throughput={"train_tokens_per_s": history.tokens / max(history.seconds, 1e-9),
                        "eval_tokens_per_s": tuned_metrics.tokens / max(tuned_metrics.seconds, 1e-9)},
            peak_memory_mb=peak_memory_mb(), best_epoch=history.best_epoch,
            history={"losses": history.losses, "epochs": history.epochs, "steps": history.steps},
            reload_check={"max_abs_diff": diff, "tolerance": RELOAD_TOLERANCE, "passed": diff <= RELOAD_TOLERANCE,
                          "test_rows": len(check_rows)},
            environment=environment(), seed=cfg.seed, quantization=quantization,
            training_precision=history.precision,
        )
        result["verdict"] = reports.verdict(result["base_metrics"], result["finetuned_metrics"])
        with _disk_full_is_user_error(run_dir):
            _write_reports(staging, result, data["test"], names, base_logits, tuned_logits)
            finalize(run_dir, staging)
        emit({"event": "finished", "run_dir": str(run_dir), "verdict": result["verdict"],
              "base_accuracy": base_metrics.accuracy, "finetuned_accuracy": tuned_metrics.accuracy})
        return RunResult(run_dir, result)
    except StopRequested as exc:
        if is_main:
            set_status(run_dir, "stopped", message=str(exc))
        emit({"event": "stopped", "message": str(exc)})
        raise
    except BaseException as exc:
        if is_main:
            shutil.rmtree(run_dir / ".staging", ignore_errors=True)  # never leave half an adapter behind
            set_status(run_dir, "failed", message=_one_line(exc))
        raise


# ---------------------------------------------------------------- steps of run(), in the order they happen


@contextlib.contextmanager
def _disk_full_is_user_error(run_dir: Path):
    """Outputs are staged, then renamed into place: a full disk leaves what the folder held before intact."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        shutil.rmtree(run_dir / ".staging", ignore_errors=True)
        raise LftError(f"the disk is full while saving to {run_dir}; nothing in that folder was replaced. "
                       f"Free some space and run again") from None


def _full_precision_reload(staging: Path, quantized, test, cfg, quantized_logits) -> dict:
    """QLoRA: the same adapter on the full-precision base, and the weight memory quantization saved."""
    full, tokenizer = load_adapter(staging, merge=True)
    metrics, logits = evaluate(full, tokenizer, test, cfg.max_length, cfg.eval_batch_size, shard=False)
    return {"mode": cfg.quantize, "weight_mb_quantized": quantized.get_memory_footprint() / 2**20,
            "weight_mb_full_precision": full.get_memory_footprint() / 2**20,
            "full_precision_reload_accuracy": metrics.accuracy,
            "full_precision_max_abs_diff": float(np.abs(logits - quantized_logits).max())}


def _init_distributed() -> bool:
    """Under torchrun or accelerate launch (WORLD_SIZE > 1), join the process group now, so that rank 0 can
    create the run folder before the others touch it; Trainer reuses the group. Returns whether this is rank 0."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return int(os.environ.get("RANK", "0")) == 0


def _broadcast(value):
    holder = [value]
    torch.distributed.broadcast_object_list(holder, src=0)
    return holder[0]


def _check_model_size(model) -> None:
    """A shared host caps model size (LFT_MAX_MODEL_PARAMS, e.g. 200e6) so one visitor cannot take it over."""
    cap = os.environ.get("LFT_MAX_MODEL_PARAMS")
    size = sum(p.numel() for p in model.parameters())
    if cap and size > float(cap):
        raise LftError(f"the model has {size / 1e6:.0f}M parameters; this host allows at most "
                       f"{float(cap) / 1e6:.0f}M (LFT_MAX_MODEL_PARAMS). Pick a smaller model")


def _warn_truncation(tokenizer, texts: list[str], max_length: int) -> None:
    lengths = [len(ids) for ids in tokenizer(list(texts), truncation=False)["input_ids"]]
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
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise LftError(f"method '{method}' does not work with this model: {first}") from None


def _count_parameters(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def _apply(model, tokenizer, base, cfg, data, params: dict):
    """Wrap the model with the method (QLoRA first prepares the quantized base) and check it runs."""
    steps = steps_per_epoch(len(data["train"]), cfg.batch_size) * cfg.epochs
    ctx = MethodContext(model.config.model_type, base.new_modules, int(np.ceil(steps)),
                        model.config.get_text_config().hidden_size, is_decoder(model.config))
    if cfg.quantize:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    model = apply_method(model, cfg.method, params, ctx)
    if ctx.is_decoder and getattr(model, "peft_config", None) and model.peft_config["default"].is_prompt_learning:
        set_padding_side(tokenizer, "left")
    _smoke_test(model, tokenizer, cfg.method)
    return model


def _pissa_init(model, run_dir: Path) -> dict:
    """PiSSA moves the top singular directions out of the base weights into A0, B0. Keeping them lets the
    trained adapter be saved as a plain LoRA of rank 2r (delta W = BA - B0A0) that loads onto the unmodified
    base. Kept on disk too, so a resumed run can still convert."""
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import load_file, save_file

    path = run_dir / "checkpoints" / "pissa_init.safetensors"
    if path.exists():
        return load_file(path)
    init = {k: v.detach().clone().contiguous() for k, v in get_peft_model_state_dict(model).items() if ".lora_" in k}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(init, path)
    return init


def _save_pissa_as_lora(model, init: dict, staging: Path) -> None:
    import copy

    import torch
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    state = get_peft_model_state_dict(model)
    for key in state:
        if ".lora_A" in key:
            state[key] = torch.cat([state[key], init[key]], dim=0)
        elif ".lora_B" in key:
            state[key] = torch.cat([state[key], -init[key]], dim=1)
    config = copy.deepcopy(model.peft_config["default"])
    config.r, config.lora_alpha, config.init_lora_weights = 2 * config.r, 2 * config.lora_alpha, True
    config.save_pretrained(str(staging))
    save_file({k: v.contiguous() for k, v in state.items()}, staging / "adapter_model.safetensors", metadata={"format": "pt"})


def _save(model, tokenizer, source: str, staging: Path, spec, pissa_init: dict | None) -> str:
    """Write the adapter (or, for plain methods, the model) with its tokenizer into the staging folder."""
    if spec.build is not None:
        reload_base = labelled_base(source, model.get_base_model().config)
        for config in model.peft_config.values():
            config.base_model_name_or_path = reload_base
            config.revision = None
        if pissa_init is not None:
            _save_pissa_as_lora(model, pissa_init, staging)
        else:
            model.save_pretrained(staging, safe_serialization=True)
    else:
        reload_base = str(staging)
        model.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    if getattr(tokenizer, "backend_tokenizer", None) is not None and (staging / "tokenizer.json").exists():
        # transformers pretty-prints tokenizer.json; compact JSON loads the same and keeps the folder small
        tokenizer.backend_tokenizer.save(str(staging / "tokenizer.json"), pretty=False)
    return reload_base


def _write_reports(staging: Path, result: dict, test, names, base_logits, tuned_logits) -> None:
    write_json(staging / "report.json", result)
    (staging / "report.md").write_text(reports.report_markdown(result))
    (staging / "report.html").write_text(reports.report_html(result))
    (staging / "README.md").write_text(reports.model_card(result))
    base_probs, tuned_probs = softmax(base_logits), softmax(tuned_logits)
    labels = np.asarray(test["label"])
    frame = pd.DataFrame({
        "text": test["text"],
        "label": [names[i] for i in labels],
        "base_prediction": [names[i] for i in base_logits.argmax(-1)],
        "finetuned_prediction": [names[i] for i in tuned_logits.argmax(-1)],
        "base_true_prob": base_probs[np.arange(len(labels)), labels].round(4),
        "finetuned_true_prob": tuned_probs[np.arange(len(labels)), labels].round(4),
    })
    frame.to_csv(staging / "test_predictions.csv", index=False)


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
            "threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()}


def _event_log(run_dir: Path, emit: Emit, replay: list[dict]) -> Emit:
    """Every event also goes to run_dir/events.jsonl, so a reloaded page or a notebook can replay the run and a
    worker never stalls on a pipe nobody reads."""
    path = run_dir / "events.jsonl"
    append_events(path, replay)

    def both(event: dict) -> None:
        emit(append_events(path, [event])[0])

    return both


class _forward_warnings(logging.Handler):
    """Forwards lft_core warnings (truncation, dropped rows) as events while a run lasts."""

    def __init__(self, emit: Emit):
        super().__init__(logging.WARNING)
        self.emit_event = emit
        log.addHandler(self)

    def emit(self, record):
        self.emit_event({"event": "warning", "message": record.getMessage()})

    def close(self):
        log.removeHandler(self)
        super().close()


BASELINE_KEYS = ("model", "dataset", "dataset_config", "text_column", "label_column", "train_split",
                 "validation_split", "test_split", "max_train_samples", "max_eval_samples", "max_length", "seed",
                 "split_seed", "quantize")


def baseline_path(cfg: RunConfig, folder: Path) -> Path:
    """Where the baseline of this data and model configuration is kept, so a run can reuse it."""
    import hashlib

    key = json.dumps({k: getattr(cfg, k) for k in BASELINE_KEYS}, sort_keys=True, default=str)
    return Path(folder) / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def baseline(cfg: RunConfig, keep_in: Path | None = None):
    """Stage 1 alone: the base model (with its seeded fresh head) scored on the test split.
    Returns (metrics, label names). With keep_in, also saves the evaluation for run(base_eval=...)."""
    validate(cfg)
    data = load_data(cfg)
    names = data["train"].features["label"].names
    base = load_base_model(cfg.model, names, trust_remote_code=cfg.trust_remote_code, allow_pickle=cfg.allow_pickle,
                           seed=cfg.seed, quantize=cfg.quantize, base_dropout=cfg.base_dropout)
    metrics, logits = evaluate(base.model, base.tokenizer, data["test"], cfg.max_length, cfg.eval_batch_size)
    if keep_in is not None:
        Path(keep_in).mkdir(parents=True, exist_ok=True)
        write_json(baseline_path(cfg, keep_in), {"metrics": metrics.to_dict(), "logits": logits.tolist()})
    return metrics, names
