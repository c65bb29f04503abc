"""Methods: one registry maps a name to everything about it: its peft config, defaults that work, the options the
app shows (with ranges), and any special needs (a training callback, a step before training, save options, a
padding side). Nothing outside this file branches on a method's name, so adding a method is one entry.

Defaults are measured where it mattered: good learning rates differ by orders of magnitude between methods
(prompt tuning ~1e-2, LoRA ~1e-3, full fine-tuning ~5e-5). Each method's rate holds at batches of up to
batching.LR_REFERENCE_BATCH texts; larger default batches scale it up (batching.default_learning_rate). LoRA dropout
is off (peft's own default): its random masks cost step time for the same accuracy. The runs behind these choices
are in benchmarks/results/defaults.md.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from lft_core.errors import LftError, first_line
from lft_core.values import coerce

# peft is imported inside the functions: it takes seconds to import, and the app lists methods at start-up.


@dataclass(frozen=True)
class MethodContext:
    """Facts about the model and run that some configs need."""

    model_type: str
    head_modules: list[str]
    """full names of the head's modules (models.BaseModel.head_modules): they train and are saved whatever the
    method"""
    total_steps: int
    hidden_size: int
    is_decoder: bool


@dataclass(frozen=True)
class Param:
    """A method option the app shows as a slider; validate() checks values against low (and high, if bounded)."""

    type: type
    low: float
    high: float
    step: float = 1
    bounded: bool = False
    """True: high is a hard limit (a probability), not just the end of the slider."""


@dataclass(frozen=True)
class MethodSpec:
    name: str
    description: str
    learning_rate: float
    defaults: dict[str, Any] = field(default_factory=dict)
    build: Callable[[dict, MethodContext], Any] | None = None
    """Builds the peft config; None for the plain (non-peft) baselines."""
    config_class: str | None = None
    """The peft config class, whose fields say which options exist and their types."""
    trainable: Callable[[str], bool] | None = None
    """For plain methods: which parameter names train (the head always trains)."""
    tunable: dict[str, Param] = field(default_factory=dict)
    """Options the app shows as sliders, in order."""
    callbacks: Callable[[torch.nn.Module], list] | None = None
    """Trainer callbacks the method needs during training."""
    before_training: Callable[[torch.nn.Module, Path], None] | None = None
    """Called with the wrapped model and the run's state folder before the first step (and again on resume)."""
    save: Callable[[torch.nn.Module, Path, Path], None] | None = None
    """Writes the trained adapter into a folder (given the run's state folder) when save_pretrained alone is not
    enough."""
    decoder_padding: str = "right"
    """Padding side on decoder models."""

    @property
    def is_peft(self) -> bool:
        return self.build is not None


def _peft_map(kind: str) -> dict:
    """peft's own per-architecture target modules for a method kind (LORA, IA3, VERA, ...)."""
    from peft.utils import constants

    return getattr(constants, f"TRANSFORMERS_MODELS_TO_{kind}_TARGET_MODULES_MAPPING")


# Architectures peft's tables lack, with their attention projection names.
EXTRA_TARGETS = {"mpnet": ["q", "v"], "deberta-v2": ["query_proj", "value_proj"], "modernbert": ["Wqkv"]}
EXTRA_LAYERNORMS = {"bert": ["LayerNorm"], "roberta": ["LayerNorm"], "mpnet": ["LayerNorm"], "xlm-roberta": ["LayerNorm"],
                    "distilbert": ["sa_layer_norm", "output_layer_norm"], "electra": ["LayerNorm"]}
LORA_MAP = "LORA"


def _targets(mapping: str, ctx: MethodContext, params: dict, fallback: Any = None) -> Any:
    if "target_modules" in params:
        return params["target_modules"]
    extra = EXTRA_LAYERNORMS if mapping == "LNTUNING" else EXTRA_TARGETS
    table = _peft_map(mapping)
    if ctx.model_type in table:
        return list(table[ctx.model_type])
    if ctx.model_type in extra:
        return extra[ctx.model_type]
    if fallback is not None:
        return fallback
    raise LftError(f"no default target modules for model type '{ctx.model_type}'; set method_params.target_modules "
                   f"(e.g. the names of its attention projections)")


def _common(params: dict, ctx: MethodContext) -> dict:
    """Options every peft config takes: the task, and the head's modules (the new ones and a pooler)."""
    import peft

    out = dict(params)
    out.setdefault("task_type", peft.TaskType.SEQ_CLS)
    # peft itself adds 'classifier' and 'score' for SEQ_CLS; the rest of the head (new modules, a pooler) is added here
    extra = set(ctx.head_modules) - {"classifier", "score"}
    out["modules_to_save"] = sorted(set(out.get("modules_to_save") or []) | extra) or None
    return out


def _with_targets(config_class: str, mapping: str = LORA_MAP, fallback: Any = None, **fixed) -> Callable:
    def build(params: dict, ctx: MethodContext):
        import peft

        kwargs = _common(params, ctx)
        kwargs["target_modules"] = _targets(mapping, ctx, params, fallback)
        return getattr(peft, config_class)(**{**fixed, **kwargs})

    return build


def _ia3(params: dict, ctx: MethodContext):
    import peft
    from peft.utils import constants

    kwargs = _common(params, ctx)
    kwargs["target_modules"] = _targets("IA3", ctx, params)
    if "feedforward_modules" not in params:
        feedforward = constants.TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING.get(ctx.model_type, [])
        kwargs["feedforward_modules"] = [m for m in feedforward if m in kwargs["target_modules"]]
    return peft.IA3Config(**kwargs)


def _adalora(params: dict, ctx: MethodContext):
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


def _adalora_callbacks(model) -> list:
    from transformers import TrainerCallback

    class ReallocateRanks(TrainerCallback):
        """AdaLoRA reallocates ranks between optimizer.step() and zero_grad(), as its docs require."""

        def on_optimizer_step(self, args, state, control, **kwargs):
            model.base_model.update_and_allocate(state.global_step)

    return [ReallocateRanks()]


def _vblora(params: dict, ctx: MethodContext):
    import peft

    kwargs = _common(params, ctx)
    kwargs["target_modules"] = _targets(LORA_MAP, ctx, params, fallback="all-linear")
    # vector_length must divide every targeted dimension; the hidden size's largest power-of-two divisor does.
    kwargs.setdefault("vector_length", math.gcd(ctx.hidden_size, 64))
    return peft.VBLoRAConfig(**kwargs)


def _prompt(config_class: str) -> Callable:
    def build(params: dict, ctx: MethodContext):
        import peft

        return getattr(peft, config_class)(**_common(params, ctx))

    return build


PISSA_INITIAL = "pissa-initial-adapter"


def _pissa_keep_initial(model, state_dir: Path) -> None:
    """PiSSA moves the top singular directions out of the base weights into the adapter. Keeping the initial
    adapter lets peft save the trained one as a plain LoRA of rank 2r (delta W = BA - B0A0) that loads onto the
    unmodified base. Kept in the state folder, so a resumed run can still convert."""
    from peft.utils import CONFIG_NAME

    folder = state_dir / PISSA_INITIAL
    if not (folder / CONFIG_NAME).exists():
        model.save_pretrained(str(folder))


def _pissa_save_as_lora(model, folder: Path, state_dir: Path) -> None:
    from peft.utils import SAFETENSORS_WEIGHTS_NAME, get_peft_model_state_dict
    from safetensors.torch import load_file, save_file

    model.save_pretrained(str(folder), path_initial_model_for_weight_conversion=str(state_dir / PISSA_INITIAL))
    # peft's conversion returns the LoRA matrices alone; the trained head (modules_to_save) goes back in
    weights = folder / SAFETENSORS_WEIGHTS_NAME
    state = load_file(weights)
    for key, value in get_peft_model_state_dict(model).items():
        if ".lora_" not in key:
            state.setdefault(key, value.detach().contiguous())
    save_file(state, weights, metadata={"format": "pt"})


def _is_bias(name: str) -> bool:
    return name.endswith(".bias")


LORA_TUNABLE = {"r": Param(int, 1, 64), "lora_alpha": Param(int, 1, 128),
                "lora_dropout": Param(float, 0.0, 0.5, 0.01, bounded=True)}
PROMPT_TUNABLE = {"num_virtual_tokens": Param(int, 1, 100)}
LORA_DEFAULTS = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0}

METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec("lora", "LoRA: low-rank updates of the attention projections", 2e-3, LORA_DEFAULTS,
                   _with_targets("LoraConfig", fallback="all-linear"), "LoraConfig", tunable=LORA_TUNABLE),
        MethodSpec("dora", "DoRA: LoRA with a learned magnitude per output", 2e-3, LORA_DEFAULTS,
                   _with_targets("LoraConfig", fallback="all-linear", use_dora=True), "LoraConfig",
                   tunable=LORA_TUNABLE),
        MethodSpec("rslora", "rsLoRA: LoRA scaled by alpha/sqrt(r)", 2e-3, LORA_DEFAULTS,
                   _with_targets("LoraConfig", fallback="all-linear", use_rslora=True), "LoraConfig",
                   tunable=LORA_TUNABLE),
        MethodSpec("pissa", "PiSSA: LoRA initialised from the principal singular vectors", 2e-3,
                   {"r": 8, "lora_alpha": 8, "lora_dropout": 0.0},
                   _with_targets("LoraConfig", fallback="all-linear", init_lora_weights="pissa_niter_4"), "LoraConfig",
                   tunable=LORA_TUNABLE, before_training=_pissa_keep_initial, save=_pissa_save_as_lora),
        MethodSpec("ia3", "IA3: learned rescaling of keys, values and feed-forward activations", 1e-2,
                   {}, _ia3, "IA3Config"),
        MethodSpec("loha", "LoHa: low-rank Hadamard product updates", 2e-3, {"r": 8, "alpha": 16},
                   _with_targets("LoHaConfig", fallback="all-linear"), "LoHaConfig",
                   tunable={"r": Param(int, 1, 64), "alpha": Param(int, 1, 128)}),
        MethodSpec("lokr", "LoKr: low-rank Kronecker product updates", 2e-3, {"r": 8, "alpha": 16},
                   _with_targets("LoKrConfig", fallback="all-linear"), "LoKrConfig",
                   tunable={"r": Param(int, 1, 64), "alpha": Param(int, 1, 128)}),
        MethodSpec("adalora", "AdaLoRA: LoRA with ranks pruned by importance during training", 2e-3,
                   {"init_r": 12, "target_r": 8, "lora_alpha": 16}, _adalora, "AdaLoraConfig",
                   tunable={"init_r": Param(int, 1, 64), "target_r": Param(int, 1, 64), "lora_alpha": Param(int, 1, 128)},
                   callbacks=_adalora_callbacks),
        MethodSpec("vera", "VeRA: shared frozen random matrices with learned scaling vectors", 1e-2,
                   {"r": 128}, _with_targets("VeraConfig", "VERA"), "VeraConfig", tunable={"r": Param(int, 1, 512)}),
        MethodSpec("oft", "OFT: orthogonal rotation of the projection weights", 2e-3,
                   {"r": 0, "oft_block_size": 32}, _with_targets("OFTConfig", fallback="all-linear"), "OFTConfig",
                   tunable={"oft_block_size": Param(int, 2, 128)}),
        MethodSpec("boft", "BOFT: butterfly-factorised orthogonal fine-tuning", 2e-3,
                   {"boft_block_size": 4, "boft_n_butterfly_factor": 1}, _with_targets("BOFTConfig"), "BOFTConfig",
                   tunable={"boft_block_size": Param(int, 1, 64), "boft_n_butterfly_factor": Param(int, 1, 4)}),
        MethodSpec("hra", "HRA: Householder reflection adaptation", 2e-3, {"r": 8},
                   _with_targets("HRAConfig"), "HRAConfig", tunable={"r": Param(int, 1, 64)}),
        MethodSpec("fourierft", "FourierFT: learned sparse spectral coefficients", 1e-2,
                   {"n_frequency": 1000, "scaling": 150.0}, _with_targets("FourierFTConfig", "FOURIERFT"),
                   "FourierFTConfig",
                   tunable={"n_frequency": Param(int, 10, 5000, 10), "scaling": Param(float, 1.0, 500.0, 1.0)}),
        MethodSpec("vblora", "VB-LoRA: low-rank updates composed from a shared vector bank", 5e-3,
                   {"r": 4, "num_vectors": 64}, _vblora, "VBLoRAConfig",
                   tunable={"r": Param(int, 1, 32), "num_vectors": Param(int, 4, 512)}),
        MethodSpec("ln-tuning", "LN tuning: train only the LayerNorm weights", 5e-3,
                   {}, _with_targets("LNTuningConfig", "LNTUNING"), "LNTuningConfig"),
        MethodSpec("prompt-tuning", "Prompt tuning: learned virtual input tokens", 1e-2,
                   {"num_virtual_tokens": 20}, _prompt("PromptTuningConfig"), "PromptTuningConfig",
                   tunable=PROMPT_TUNABLE, decoder_padding="left"),
        MethodSpec("p-tuning", "P-tuning: virtual tokens produced by a small prompt encoder", 5e-3,
                   {"num_virtual_tokens": 20, "encoder_hidden_size": 128}, _prompt("PromptEncoderConfig"),
                   "PromptEncoderConfig", tunable={**PROMPT_TUNABLE, "encoder_hidden_size": Param(int, 8, 1024, 8)},
                   decoder_padding="left"),
        MethodSpec("prefix-tuning", "Prefix tuning: learned key/value prefixes in every layer", 1e-2,
                   {"num_virtual_tokens": 20}, _prompt("PrefixTuningConfig"), "PrefixTuningConfig",
                   tunable=PROMPT_TUNABLE, decoder_padding="left"),
        MethodSpec("bitfit", "BitFit: train the bias terms and the head", 5e-3, trainable=_is_bias),
        MethodSpec("head-only", "Head only: frozen base, only the classification head (and a pooler) trains",
                   5e-3, trainable=lambda name: False),
        MethodSpec("full", "Full fine-tuning: every weight trains (the reference)", 5e-5,
                   trainable=lambda name: True),
    )
}
# Decoders pool on the last position; prompt-learning methods feed embeddings, where transformers cannot find the
# last real token, so the pad tokens must sit on the left (see models.set_padding_side).


def list_methods() -> list[str]:
    return list(METHODS)


def get_method(name: str) -> MethodSpec:
    if name not in METHODS:
        raise LftError(f"unknown method '{name}'; choose one of: {', '.join(METHODS)}")
    return METHODS[name]


# ---------------------------------------------------------------- options, typed


def _option_types(spec: MethodSpec) -> dict[str, Any]:
    if spec.config_class is None:
        return {}
    import peft

    cls = getattr(peft, spec.config_class)
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls) if f.init}


def typed_params(name: str, overrides: dict | None = None) -> tuple[dict, list[str]]:
    """The method's defaults with the user's options on top, each typed by its peft config field ('1e-2' becomes
    0.01), and the problems found: unknown options (with the nearest name), wrong types, values out of range."""
    spec = get_method(name)
    overrides = dict(overrides or {})
    if not spec.is_peft:
        if overrides:
            return {}, [f"method '{name}' takes no options (got {', '.join(map(str, overrides))})"]
        return {}, []
    kinds, problems, params = _option_types(spec), [], {**spec.defaults}
    for key, value in overrides.items():
        if key not in kinds:
            close = difflib.get_close_matches(str(key), list(kinds), n=1)
            problems.append(f"method '{name}' has no option '{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
            continue
        try:
            params[key] = _coerce_option(value, kinds[key], f"method_params.{key}")
        except ValueError as exc:
            problems.append(str(exc))
    for key, param in spec.tunable.items():
        value = params.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if value < param.low or (param.bounded and value > param.high):
                limit = f"between {param.low:g} and {param.high:g}" if param.bounded else f"at least {param.low:g}"
                problems.append(f"method_params.{key} must be {limit} (got {value!r})")
    return params, problems


def _coerce_option(value, kind, name):
    """Simple field types (int, float, bool, str, Optional of one) are coerced; richer ones pass as given."""
    simple = {int, float, bool, str}
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    base = args[0] if len(args) == 1 else kind
    if base in simple:
        return coerce(value, kind if len(args) == 1 else base, name)
    return value


def param_problems(name: str, overrides: dict) -> list[str]:
    return typed_params(name, overrides)[1]


def method_params(name: str, overrides: dict | None = None) -> dict:
    """The options a run uses; raises LftError listing what is wrong."""
    params, problems = typed_params(name, overrides)
    if problems:
        raise LftError("invalid method options: " + "; ".join(problems))
    return params


# ---------------------------------------------------------------- applying a method


def build_peft_config(name: str, params: dict, ctx: MethodContext):
    spec = get_method(name)
    try:
        return spec.build(method_params(name, params), ctx)
    except (TypeError, ValueError) as exc:
        raise LftError(f"method '{name}': bad option ({first_line(exc)}); see `python -m lft_core methods`") from None


def apply_method(model: torch.nn.Module, name: str, params: dict, ctx: MethodContext) -> torch.nn.Module:
    """Wrap or freeze the model for this method. Raises LftError when the model cannot take the method."""
    spec = get_method(name)
    if not spec.is_peft:
        for param_name, param in model.named_parameters():
            in_head = any(param_name.startswith(m + ".") for m in ctx.head_modules)
            param.requires_grad = in_head or spec.trainable(param_name)
        return model
    import peft

    config = build_peft_config(name, params, ctx)
    try:
        return peft.get_peft_model(model, config)
    except (ValueError, TypeError, AttributeError, NotImplementedError, KeyError) as exc:
        raise LftError(f"method '{name}' cannot be applied to this {ctx.model_type} model: {first_line(exc)}") from None


def default_params(model_name: str, method: str) -> dict:
    """The options a method would use on this model, target modules resolved for its architecture: what the app
    pre-fills. Reads only the model's config, not its weights."""
    from lft_core.models import load_model_config

    config = load_model_config(model_name)
    params = dict(get_method(method).defaults)
    ctx = MethodContext(config.model_type, [], 100, getattr(config, "hidden_size", 64), False)
    if get_method(method).is_peft:
        built = build_peft_config(method, {}, ctx)
        targets = getattr(built, "target_modules", None)
        if targets is not None:
            params["target_modules"] = sorted(targets) if not isinstance(targets, str) else targets
    return params
