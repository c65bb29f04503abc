"""Methods: one registry maps a name to how to build it. Adding a peft method is one entry.

Each entry carries defaults that work, because good learning rates differ by orders of magnitude between
methods (prompt tuning ~1e-2, LoRA ~1e-3, full fine-tuning ~5e-5). LoRA's 1e-3 is measured: at 4e-3 it
matched on bbc-news (425 steps) but collapsed to the majority class on airline-tweets (1,440 steps, test 0.65);
at 1e-3 it scored 0.976 and 0.863. LoRA dropout is off (peft's own default): its random masks took a fifth
of a bf16 MiniLM step on CPU, and on bbc-news (3 seeds, 1 epoch) the mean test accuracy was the same with and
without it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from lft_core.errors import LftError

# peft is imported inside the functions: it takes seconds to import, and the app lists methods at start-up.


@dataclass(frozen=True)
class MethodContext:
    """Facts about the model and run that some configs need."""

    model_type: str
    new_modules: list[str]
    total_steps: int
    hidden_size: int
    is_decoder: bool


@dataclass(frozen=True)
class MethodSpec:
    name: str
    description: str
    learning_rate: float
    defaults: dict[str, Any] = field(default_factory=dict)
    build: Callable[[dict, MethodContext], peft.PeftConfig] | None = None
    """Builds the peft config; None for the plain (non-peft) baselines."""
    trainable: Callable[[str], bool] | None = None
    """For plain methods: which parameter names train (the head always trains)."""


def _peft_map(kind: str) -> dict:
    """peft's own per-architecture target modules for a method kind (LORA, IA3, VERA, ...)."""
    from peft.utils import constants

    return getattr(constants, f"TRANSFORMERS_MODELS_TO_{kind}_TARGET_MODULES_MAPPING")


def _targets(mapping: dict | str, ctx: MethodContext, params: dict, fallback: Any = None) -> Any:
    if "target_modules" in params:
        return params["target_modules"]
    extra = EXTRA_LAYERNORMS if mapping == "LNTUNING" else EXTRA_TARGETS
    if isinstance(mapping, str):
        mapping = _peft_map(mapping)
    if ctx.model_type in mapping:
        return list(mapping[ctx.model_type])
    if ctx.model_type in extra:
        return extra[ctx.model_type]
    if fallback is not None:
        return fallback
    raise LftError(
        f"no default target modules for model type '{ctx.model_type}'; set method_params.target_modules "
        f"(e.g. the names of its attention projections)"
    )


# Architectures peft's tables lack, with their attention projection names.
EXTRA_TARGETS = {"mpnet": ["q", "v"], "deberta-v2": ["query_proj", "value_proj"], "modernbert": ["Wqkv"]}
EXTRA_LAYERNORMS = {"bert": ["LayerNorm"], "roberta": ["LayerNorm"], "mpnet": ["LayerNorm"], "xlm-roberta": ["LayerNorm"],
                    "distilbert": ["sa_layer_norm", "output_layer_norm"], "electra": ["LayerNorm"]}
LORA_MAP = "LORA"


def _common(params: dict, ctx: MethodContext, *drop: str) -> dict:
    """Options every peft config takes, minus the ones only lft_core reads."""
    import peft

    out = {k: v for k, v in params.items() if k not in drop}
    out.setdefault("task_type", peft.TaskType.SEQ_CLS)
    # peft itself adds 'classifier' and 'score' for SEQ_CLS; anything else the checkpoint lacked is added here
    extra = set(ctx.new_modules) - {"classifier", "score"}
    out["modules_to_save"] = sorted(set(out.get("modules_to_save") or []) | extra) or None
    return out


def _lora(**variant) -> Callable:
    def build(params: dict, ctx: MethodContext) -> peft.PeftConfig:
        import peft

        kwargs = _common(params, ctx)
        kwargs["target_modules"] = _targets(LORA_MAP, ctx, params, fallback="all-linear")
        return peft.LoraConfig(**{**variant, **kwargs})

    return build


def _simple(config_name: str, mapping: dict | str = LORA_MAP, fallback: Any = None) -> Callable:
    def build(params: dict, ctx: MethodContext) -> peft.PeftConfig:
        import peft

        kwargs = _common(params, ctx)
        kwargs["target_modules"] = _targets(mapping, ctx, params, fallback)
        return getattr(peft, config_name)(**kwargs)

    return build


def _ia3(params: dict, ctx: MethodContext) -> peft.PeftConfig:
    import peft
    from peft.utils import constants

    kwargs = _common(params, ctx)
    kwargs["target_modules"] = _targets("IA3", ctx, params)
    if "feedforward_modules" not in params:
        feedforward = constants.TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING.get(ctx.model_type, [])
        kwargs["feedforward_modules"] = [m for m in feedforward if m in kwargs["target_modules"]]
    return peft.IA3Config(**kwargs)


def _adalora(params: dict, ctx: MethodContext) -> peft.PeftConfig:
    import peft

    kwargs = _common(params, ctx)
    kwargs["target_modules"] = _targets(LORA_MAP, ctx, params, fallback="all-linear")
    # AdaLoRA prunes ranks on a schedule over the whole run, so it must know the step count.
    total = max(ctx.total_steps, 4)
    kwargs.setdefault("total_step", total)
    kwargs.setdefault("tinit", max(1, total // 10))
    kwargs.setdefault("tfinal", max(1, total // 5))
    kwargs.setdefault("deltaT", max(1, total // 20))
    return peft.AdaLoraConfig(**kwargs)


def _vblora(params: dict, ctx: MethodContext) -> peft.PeftConfig:
    import peft

    kwargs = _common(params, ctx)
    kwargs["target_modules"] = _targets(LORA_MAP, ctx, params, fallback="all-linear")
    # vector_length must divide every targeted dimension; the hidden size's largest power-of-two divisor does.
    kwargs.setdefault("vector_length", math.gcd(ctx.hidden_size, 64))
    return peft.VBLoRAConfig(**kwargs)


def _prompt(config_name: str) -> Callable:
    def build(params: dict, ctx: MethodContext) -> peft.PeftConfig:
        import peft

        return getattr(peft, config_name)(**_common(params, ctx))

    return build


def _is_bias(name: str) -> bool:
    return name.endswith(".bias")


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec("lora", "LoRA: low-rank updates of the attention projections", 1e-3,
                   {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0}, _lora()),
        MethodSpec("dora", "DoRA: LoRA with a learned magnitude per output", 1e-3,
                   {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0}, _lora(use_dora=True)),
        MethodSpec("rslora", "rsLoRA: LoRA scaled by alpha/sqrt(r)", 1e-3,
                   {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0}, _lora(use_rslora=True)),
        MethodSpec("pissa", "PiSSA: LoRA initialised from the principal singular vectors", 2e-3,
                   {"r": 8, "lora_alpha": 8, "lora_dropout": 0.0}, _lora(init_lora_weights="pissa_niter_4")),
        MethodSpec("ia3", "IA3: learned rescaling of keys, values and feed-forward activations", 1e-2,
                   {}, _ia3),
        MethodSpec("loha", "LoHa: low-rank Hadamard product updates", 2e-3,
                   {"r": 8, "alpha": 16}, _simple("LoHaConfig", fallback="all-linear")),
        MethodSpec("lokr", "LoKr: low-rank Kronecker product updates", 2e-3,
                   {"r": 8, "alpha": 16}, _simple("LoKrConfig", fallback="all-linear")),
        MethodSpec("adalora", "AdaLoRA: LoRA with ranks pruned by importance during training", 2e-3,
                   {"init_r": 12, "target_r": 8, "lora_alpha": 16}, _adalora),
        MethodSpec("vera", "VeRA: shared frozen random matrices with learned scaling vectors", 1e-2,
                   {"r": 128}, _simple("VeraConfig", "VERA")),
        MethodSpec("oft", "OFT: orthogonal rotation of the projection weights", 2e-3,
                   {"r": 0, "oft_block_size": 32}, _simple("OFTConfig", fallback="all-linear")),
        MethodSpec("boft", "BOFT: butterfly-factorised orthogonal fine-tuning", 2e-3,
                   {"boft_block_size": 4, "boft_n_butterfly_factor": 1}, _simple("BOFTConfig")),
        MethodSpec("hra", "HRA: Householder reflection adaptation", 2e-3,
                   {"r": 8}, _simple("HRAConfig")),
        MethodSpec("fourierft", "FourierFT: learned sparse spectral coefficients", 1e-2,
                   {"n_frequency": 1000, "scaling": 150.0},
                   _simple("FourierFTConfig", "FOURIERFT")),
        MethodSpec("vblora", "VB-LoRA: low-rank updates composed from a shared vector bank", 5e-3,
                   {"r": 4, "num_vectors": 64}, _vblora),
        MethodSpec("ln-tuning", "LN tuning: train only the LayerNorm weights", 5e-3,
                   {}, _simple("LNTuningConfig", "LNTUNING")),
        MethodSpec("prompt-tuning", "Prompt tuning: learned virtual input tokens", 1e-2,
                   {"num_virtual_tokens": 20}, _prompt("PromptTuningConfig")),
        MethodSpec("p-tuning", "P-tuning: virtual tokens produced by a small prompt encoder", 5e-3,
                   {"num_virtual_tokens": 20, "encoder_hidden_size": 128}, _prompt("PromptEncoderConfig")),
        MethodSpec("prefix-tuning", "Prefix tuning: learned key/value prefixes in every layer", 1e-2,
                   {"num_virtual_tokens": 20}, _prompt("PrefixTuningConfig")),
        MethodSpec("bitfit", "BitFit: train the bias terms and the head", 5e-3, trainable=_is_bias),
        MethodSpec("head-only", "Linear probe: frozen base, only the classification head trains", 5e-3,
                   trainable=lambda name: False),
        MethodSpec("full", "Full fine-tuning: every weight trains (the reference)", 5e-5,
                   trainable=lambda name: True),
    )
}


def list_methods() -> list[str]:
    return list(METHODS)


def get_method(name: str) -> MethodSpec:
    if name not in METHODS:
        raise LftError(f"unknown method '{name}'; choose one of: {', '.join(METHODS)}")
    return METHODS[name]


def is_peft(name: str) -> bool:
    return get_method(name).build is not None


def method_params(name: str, overrides: dict | None = None) -> dict:
    """The method's defaults with the user's options on top."""
    return {**get_method(name).defaults, **(overrides or {})}


def build_peft_config(name: str, params: dict, ctx: MethodContext) -> peft.PeftConfig:
    spec = get_method(name)
    try:
        return spec.build(method_params(name, params), ctx)
    except TypeError as exc:
        raise LftError(f"method '{name}': bad option ({exc}); see `python -m lft_core methods`") from None


def apply_method(model: torch.nn.Module, name: str, params: dict, ctx: MethodContext) -> torch.nn.Module:
    """Wrap or freeze the model for this method. Raises LftError when the model cannot take the method."""
    spec = get_method(name)
    if spec.build is None:
        for param_name, param in model.named_parameters():
            in_head = any(param_name.startswith(m + ".") for m in ctx.new_modules)
            param.requires_grad = in_head or spec.trainable(param_name)
        return model
    import peft

    config = build_peft_config(name, params, ctx)
    try:
        return peft.get_peft_model(model, config)
    except (ValueError, TypeError, AttributeError, NotImplementedError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise LftError(f"method '{name}' cannot be applied to this {ctx.model_type} model: {first}") from None


def default_params(model_name: str, method: str) -> dict:
    """The options a method would use on this model, target modules resolved for its architecture: what the
    app pre-fills. Reads only the model's config, not its weights."""
    from transformers import AutoConfig

    from lft_core.models import resolve_model

    config = AutoConfig.from_pretrained(resolve_model(model_name))
    params = method_params(method)
    ctx = MethodContext(config.model_type, [], 100, getattr(config, "hidden_size", 64), False)
    if get_method(method).build is not None:
        built = build_peft_config(method, {}, ctx)
        targets = getattr(built, "target_modules", None)
        if targets is not None:
            params["target_modules"] = sorted(targets) if not isinstance(targets, str) else targets
    return params
