"""The forms of tabs 1 and 3, their widgets by name, and how their values become a RunConfig. Events take a form's
widgets as a set, so a callback receives {widget: value} and reads each field by name: a new field is one line
here, not a lockstep edit of positional lists."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path

import gradio as gr

import lft_core
from lft_core import DEFAULT_MAX_LENGTH, TRACKERS, LftError, RunConfig

DEFAULTS = RunConfig()
PARAM_SLOTS = 3
"""Sliders for a method's own options (lft_core.METHODS[...].tunable); more options go in the YAML box."""


def _shape_fields() -> tuple[gr.Textbox, gr.Textbox]:
    """Sentence pairs and multi-label CSVs: standard pair names (sentence1/sentence2, premise/hypothesis, ...) and
    list-valued labels are detected, so both fields are for the other cases."""
    with gr.Accordion("Sentence pairs and multi-label", open=False):
        with gr.Row():
            pair = gr.Textbox(value="", label="Second text column (sentence pairs)", placeholder="detected",
                              info="e.g. hypothesis; standard pair names need nothing here")
            separator = gr.Textbox(value="", label="Label separator (multi-label CSV)", placeholder="none",
                                   info="e.g. ; when a cell holds several labels; JSONL lists need nothing")
    return pair, separator


def _choices(registry) -> list[tuple[str, str]]:
    return [(name, name) for name in registry]


@dataclass
class DataForm:
    model: gr.Dropdown
    dataset: gr.Dropdown
    upload: gr.File
    text_column: gr.Dropdown
    label_column: gr.Dropdown
    max_train_samples: gr.Textbox
    max_eval_samples: gr.Textbox
    max_length: gr.Slider
    truncation: gr.Dropdown
    seed: gr.Number
    check: gr.Button
    text_pair_column: gr.Textbox
    label_separator: gr.Textbox

    NOT_CONFIG = ("upload", "check")

    @classmethod
    def create(cls) -> "DataForm":
        with gr.Row():
            model = gr.Dropdown(_choices(lft_core.MODELS), value=DEFAULTS.model, allow_custom_value=True, scale=2,
                                label="Model", info="built-in, a Hub name or a local folder")
            dataset = gr.Dropdown(_choices(lft_core.DATASETS), value=DEFAULTS.dataset, allow_custom_value=True, scale=2,
                                  label="Dataset", info="built-in, a Hub name, a local path or an upload")
            upload = gr.File(label="Upload CSV / JSONL / Parquet", file_types=[".csv", ".tsv", ".jsonl", ".json", ".parquet"],
                             height=80, scale=2)
        with gr.Row():
            text_column = gr.Dropdown([], value=None, allow_custom_value=True, label="Text column (empty = detect)")
            label_column = gr.Dropdown([], value=None, allow_custom_value=True, label="Label column (empty = detect)")
            max_train = gr.Textbox(value="", placeholder="all", label="Train subset (texts)")
            max_eval = gr.Textbox(value="", placeholder="all", label="Validation/test cap (texts)")
        with gr.Row():
            max_length = gr.Slider(16, 512, value=DEFAULT_MAX_LENGTH, step=16, label="Max length (tokens)", scale=2)
            truncation = gr.Dropdown(["head", "head+tail", "tail"], value=DEFAULTS.truncation,
                                     label="Long texts keep")
            seed = gr.Number(value=DEFAULTS.seed, precision=0, label="Seed")
            check = gr.Button("Check dataset health", variant="secondary")
        return cls(model, dataset, upload, text_column, label_column, max_train, max_eval, max_length, truncation, seed,
                   check, *_shape_fields())

    @property
    def inputs(self) -> set:
        return {getattr(self, f.name) for f in fields(self) if f.name not in self.NOT_CONFIG}

    def values(self, given: dict) -> dict:
        """The RunConfig fields this form sets, from {widget: value}."""
        values = {f.name: given[getattr(self, f.name)] for f in fields(self) if f.name not in self.NOT_CONFIG}
        for key in ("model", "dataset"):
            values[key] = str(values[key] or "").strip()
        if not values["model"]:
            raise LftError("choose a model: a built-in one, a Hub name or a local folder")
        if not values["dataset"]:
            raise LftError("choose a dataset or upload a file")
        return {k: v for k, v in values.items() if v not in (None, "")}

    def setters(self, cfg: dict) -> dict:
        """Widget updates that show a job's config (a page that reattaches to a running job), or a remembered
        form; with an empty cfg, one placeholder per widget (the outputs' order)."""
        shown = [f.name for f in fields(self) if f.name not in (*self.NOT_CONFIG, "text_column", "label_column",
                                                               "text_pair_column")]
        if not cfg:
            return {getattr(self, name): gr.update() for name in shown}
        return {getattr(self, name): cfg.get(name) if cfg.get(name) is not None else "" for name in shown}


@dataclass
class TrainForm:
    method: gr.Dropdown
    learning_rate: gr.Textbox
    epochs: gr.Slider
    batch_size: gr.Textbox
    params: list[gr.Slider]
    target_modules: gr.Textbox
    options: gr.Textbox
    class_weights: gr.Checkbox
    report_to: gr.Dropdown

    prefilled: str = ""
    """the target modules the form itself filled in for the model: left as they are, Train derives them again
    from the model it is given (a failed or stale pre-fill must not keep another architecture's names)"""

    @classmethod
    def create(cls, more: bool = True) -> "TrainForm":
        """The form; with more=False the 'More method options' accordion waits for `more_options()`, so a tab can
        put its buttons above it (the Train button stays above the fold at 1280x720)."""
        spec = lft_core.METHODS[DEFAULTS.method]
        params = _default_params(DEFAULTS.model, DEFAULTS.method)
        with gr.Row():
            method = gr.Dropdown(list(lft_core.METHODS), value=DEFAULTS.method, label="Method")
            learning_rate = gr.Textbox(value="", placeholder=learning_rate_hint(spec),
                                       label="Learning rate")
        with gr.Row():
            # a number, not a whole-step slider: 0.5 epochs is valid and must stay 0.5
            epochs = gr.Number(value=DEFAULTS.epochs, step=0.5, label="Epochs", info="fractions allowed, e.g. 0.5")
            batch_size = gr.Textbox(value="", placeholder="auto: about 1,280 tokens", label="Batch size (texts)")
        with gr.Row():
            sliders = [gr.Slider(**update) for update in cls.param_updates(DEFAULTS.method, params)]
        class_weights = gr.Checkbox(value=DEFAULTS.class_weights, label="Class weights (for imbalanced data)")
        targets = params.get("target_modules")
        form = cls(method, learning_rate, epochs, batch_size, sliders, None, None, class_weights, None,
                   ", ".join(targets) if isinstance(targets, list) else (targets or ""))
        if more:
            form.more_options()
        return form

    def more_options(self) -> None:
        with gr.Accordion("More method options", open=False):
            self.target_modules = gr.Textbox(value=self.prefilled, label="Target modules",
                                             info="pre-filled for the architecture; empty: chosen for the model")
            self.options = gr.Textbox(value="", label="Other method options (YAML)", lines=1, max_lines=4,
                                      info="e.g. encoder_hidden_size: 128; overrides the fields above")
            self.report_to = gr.Dropdown(["none", *TRACKERS], value="none", label="Experiment tracker",
                                         info="also log the loss and validation scores (the tracker must be installed)")

    def rederive_targets(self, given: dict, prefilled: str | None) -> dict:
        """The values with the target modules left to the model being trained when the form pre-filled them and
        the user did not change them (what was pre-filled may belong to the previous model)."""
        typed = " ".join(str(given.get(self.target_modules) or "").split())
        if typed == " ".join(str(prefilled if prefilled is not None else self.prefilled).split()):
            return {**given, self.target_modules: ""}
        return given

    @property
    def inputs(self) -> set:
        return {self.method, self.learning_rate, self.epochs, self.batch_size, *self.params, self.target_modules,
                self.options, self.class_weights, self.report_to}

    @staticmethod
    def param_updates(method: str, values: dict) -> list[dict]:
        """One update per slider slot: the method's tunable options with their ranges, the rest hidden."""
        tunable = list(lft_core.METHODS[method].tunable.items())[:PARAM_SLOTS]
        updates = []
        for i in range(PARAM_SLOTS):
            if i < len(tunable):
                name, param = tunable[i]
                updates.append(dict(value=values.get(name, param.low), label=name, minimum=param.low,
                                    maximum=max(param.high, values.get(name, param.low)), step=param.step, visible=True))
            else:
                updates.append(dict(value=0, label="", minimum=0, maximum=1, step=1, visible=False))
        return updates

    def values(self, given: dict) -> dict:
        method = given[self.method]
        params = {}
        for (name, param), slider in zip(list(lft_core.METHODS[method].tunable.items())[:PARAM_SLOTS], self.params):
            params[name] = param.type(given[slider])
        targets = (given[self.target_modules] or "").strip()
        if targets:
            params["target_modules"] = [t.strip() for t in targets.split(",") if t.strip()]
        params.update(_yaml_options(given[self.options]))
        epochs = given[self.epochs]
        if isinstance(epochs, float) and epochs.is_integer():
            epochs = int(epochs)  # 2, not 2.0, in run_config.json and the model card
        values = {"method": method, "epochs": epochs, "batch_size": given[self.batch_size],
                  "method_params": params, "class_weights": bool(given[self.class_weights])}
        if str(given[self.learning_rate] or "").strip():
            values["learning_rate"] = str(given[self.learning_rate]).strip()
        if given[self.report_to] not in (None, "", "none"):
            values["report_to"] = given[self.report_to]
        return values

    def setters(self, cfg: dict) -> dict:
        """Widget updates for a job's config or a remembered form (keys it lacks keep the form's defaults)."""
        if not cfg:
            return {w: gr.update() for w in (self.method, self.learning_rate, self.epochs, self.batch_size,
                                               self.class_weights, *self.params, self.target_modules)}
        method = cfg.get("method") if cfg.get("method") in lft_core.METHODS else DEFAULTS.method
        params = {**lft_core.METHODS[method].defaults, **(cfg.get("method_params") or {})}
        updates = {self.method: method, self.learning_rate: cfg.get("learning_rate") or "",
                   self.epochs: cfg.get("epochs") if cfg.get("epochs") is not None else DEFAULTS.epochs,
                   self.batch_size: cfg.get("batch_size") or "", self.class_weights: bool(cfg.get("class_weights")),
                   self.report_to: cfg.get("report_to") or "none"}
        for slider, update in zip(self.params, self.param_updates(method, params)):
            updates[slider] = gr.update(**update)
        targets = params.get("target_modules")
        updates[self.target_modules] = ", ".join(targets) if isinstance(targets, list) else (targets or "")
        return updates


def remember(data: DataForm, train: TrainForm, given: dict) -> dict:
    """The forms' plain values, in RunConfig's field names, for the browser to keep (gr.BrowserState) and the
    setters to put back after a reload."""
    kept = {f.name: given.get(getattr(data, f.name)) for f in fields(data) if f.name not in data.NOT_CONFIG}
    kept.update(method=given.get(train.method), learning_rate=given.get(train.learning_rate),
                epochs=given.get(train.epochs), batch_size=given.get(train.batch_size),
                class_weights=given.get(train.class_weights))
    return {k: v for k, v in kept.items() if v is not None}


def _default_params(model: str, method: str) -> dict:
    """What a method would use on a model (target modules resolved); its plain defaults if the model cannot be read."""
    try:
        return lft_core.default_params(model, method)
    except (LftError, OSError, ValueError):
        return dict(lft_core.METHODS[method].defaults)


def _yaml_options(text: str | None) -> dict:
    if not text or not text.strip():
        return {}
    try:
        extra = lft_core.parse_yaml(text)
    except Exception as exc:  # PyYAML raises several types
        raise LftError(f"method options are not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(extra, dict):
        raise LftError("method options must be 'key: value' lines, e.g. num_virtual_tokens: 20")
    return extra


def build_config(data: DataForm, given: dict, train: TrainForm | None = None) -> RunConfig:
    """A checked RunConfig from the forms, host limits applied; raises LftError with one line. Everything that
    needs no model is checked here, before a worker starts."""
    values = data.values(given)
    if train is not None:
        values.update(train.values(given))
    cfg = lft_core.config_from_dict(values, source="form")
    lft_core.validate(cfg)
    if Path(cfg.dataset).suffix and not Path(cfg.dataset).exists() and cfg.dataset not in lft_core.DATASETS:
        raise LftError(f"dataset file {Path(cfg.dataset).name} does not exist (any more); upload it again")
    return cfg


def learning_rate_hint(spec) -> str:
    """What an empty learning rate means: the method's rate, scaled up for large batches (lft_core.batching)."""
    return lft_core.learning_rate_hint(spec.learning_rate)


FORM_FIELDS = {"--text-column": "Text column", "--label-column": "Label column",
               "--max-train-samples": "Train subset (texts)", "--max-eval-samples": "Validation/test cap (texts)",
               "--max-length": "Max length (tokens)", "--truncation": "Long texts keep", "--seed": "Seed",
               "--model": "Model", "--dataset": "Dataset", "--method": "Method", "--epochs": "Epochs",
               "--learning-rate": "Learning rate", "--batch-size": "Batch size (texts)",
               "--class-weights": "Class weights"}
"""lft_core's messages name the CLI's flags; in the app they name the form field that sets the same thing"""


def for_the_form(text: str) -> str:
    """A message as the app's user should read it: 'pass --text-column' becomes 'set the field Text column'."""
    def field(match: re.Match) -> str:
        label = FORM_FIELDS.get(match.group(2))
        if label is None:
            return match.group(0)
        return f"{'set the field' if match.group(1) else 'the field'} '{label}'"

    return re.sub(r"(pass )?(--[a-z][a-z-]*)", field, text)


def user_message(exc: LftError | str) -> str:
    return for_the_form(hide_paths(str(exc)))


def error(exc: LftError) -> gr.Error:
    """A user's mistake as a message box, in the form's words and without the server's folders in it."""
    return gr.Error(user_message(exc), duration=None)


def hide_paths(text: str) -> str:
    root = str(lft_core.adapters_root())
    return text.replace(root + "/", "").replace(root, "saved_adapters").replace(str(Path.cwd()) + "/", "")


_DATA_KEYS = ("dataset", "dataset_config", "text_column", "label_column", "train_split", "validation_split",
              "test_split", "label_names", "max_train_samples", "max_eval_samples", "seed", "split_seed",
              "text_pair_column", "label_separator")
_data_cache: dict = {}


def load_data(cfg: RunConfig):
    """lft_core.load_data, remembered for the last few data settings (a file by its modification time), so the
    health check, the baseline and the Train click's checks read a dataset once."""
    path = Path(cfg.dataset)
    key = (tuple(str(getattr(cfg, k)) for k in _DATA_KEYS), path.stat().st_mtime if path.exists() else None)
    if key not in _data_cache:
        if len(_data_cache) >= 4:
            _data_cache.pop(next(iter(_data_cache)))
        _data_cache[key] = lft_core.load_data(cfg)
    return _data_cache[key]
