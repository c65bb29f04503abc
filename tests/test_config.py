"""RunConfig from YAML, flags and form fields: typed values (YAML's `1e-3` included), every problem in one message,
and a CLI flag for every field."""

import dataclasses

import pytest

from lft_core import LftError, RunConfig, config_from_dict, load_config, validate
from lft_core.config import parse_yaml


def test_yaml_reads_scientific_notation_as_numbers():
    values = parse_yaml("learning_rate: 1e-3\nweight_decay: 1E-2\nepochs: 2\nseed: 42\nname: 1e3x\n")
    assert values == {"learning_rate": 0.001, "weight_decay": 0.01, "epochs": 2, "seed": 42, "name": "1e3x"}
    assert isinstance(values["epochs"], int) and isinstance(values["learning_rate"], float)


def test_yaml_config_with_1e3_learning_rate(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("learning_rate: 1e-3\nseed: '42'\nepochs: '2'\n")
    cfg = load_config(path)
    assert cfg.learning_rate == 0.001 and cfg.seed == 42 and cfg.epochs == 2.0
    validate(cfg)


@pytest.mark.parametrize("values, fragment", [
    ({"epochs": "two"}, "epochs must be a number (got 'two')"),
    ({"seed": "forty"}, "seed must be a whole number"),
    ({"seed": 1.5}, "seed must be a whole number (got 1.5)"),
    ({"batch_size": True}, "batch_size must be a whole number"),
    ({"overwrite": "maybe"}, "overwrite must be true or false"),
    ({"method_params": [1, 2]}, "method_params must be a mapping"),
    ({"learning_rat": 0.1}, "did you mean 'learning_rate'"),
])
def test_wrong_types_are_one_message(values, fragment):
    with pytest.raises(LftError) as err:
        config_from_dict(values, source="run.yaml")
    assert fragment in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("values, fragment", [
    ({"epochs": float("inf")}, "epochs must be > 0 and at most 1000"),
    ({"epochs": 0}, "epochs must be > 0"),
    ({"learning_rate": float("inf")}, "learning_rate must be a finite number > 0"),
    ({"learning_rate": 0}, "learning_rate must be a finite number > 0"),
    ({"seed": -1}, "seed must be a whole number from 0 to 4294967295"),
    ({"method": "lorax"}, "unknown method 'lorax'"),
    ({"method_params": {"lora_alpha": "abc"}}, "method_params.lora_alpha must be a whole number (got 'abc')"),
    ({"method_params": {"rank": 4}}, "method 'lora' has no option 'rank'"),
    ({"method_params": {"r": 0}}, "method_params.r must be at least 1"),
    ({"method_params": {"lora_dropout": 1.5}}, "method_params.lora_dropout must be between 0 and 0.5"),
    ({"method": "full", "method_params": {"r": 8}}, "method 'full' takes no options"),
    ({"truncation": "middle"}, "truncation must be"),
])
def test_validate_names_the_problem(values, fragment):
    with pytest.raises(LftError) as err:
        validate(config_from_dict(values))
    assert fragment in str(err.value), str(err.value)


def test_method_options_are_typed_like_the_peft_config():
    from lft_core.methods import method_params

    params = method_params("lora", {"lora_dropout": "1e-2", "r": "16", "target_modules": ["query"]})
    assert params["lora_dropout"] == 0.01 and params["r"] == 16 and params["target_modules"] == ["query"]


def test_all_problems_at_once():
    with pytest.raises(LftError) as err:
        validate(RunConfig(epochs=0, learning_rate=-1, method_params={"r": 0}))
    message = str(err.value)
    assert "epochs must be > 0" in message and "learning_rate must be" in message and "method_params.r" in message


def test_cli_has_a_flag_for_every_runconfig_field():
    from lft_core.cli import build_parser, run_flags

    run_parser = build_parser()._subparsers._group_actions[0].choices["run"]
    known = {option for action in run_parser._actions for option in action.option_strings}
    flags = run_flags()
    assert set(flags) == {f.name for f in dataclasses.fields(RunConfig)}
    missing = [f"{name} ({flag})" for name, flag in flags.items() if flag not in known]
    assert not missing, f"RunConfig fields without a CLI flag: {missing}"


def test_flags_become_a_typed_config():
    from lft_core.cli import _config_from_args, build_parser

    args = build_parser().parse_args(["run", "--learning-rate", "1e-3", "--epochs", "3", "--no-tfidf-reference",
                                      "--method-param", "lora_dropout=1e-2", "--label-names", "a,b", "--class-weights"])
    cfg = _config_from_args(args)
    assert cfg.learning_rate == 0.001 and cfg.epochs == 3.0 and cfg.tfidf_reference is False
    assert cfg.method_params == {"lora_dropout": 0.01} and cfg.label_names == ["a", "b"] and cfg.class_weights
