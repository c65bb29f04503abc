"""Every registered method on tiny BERT, GPT-2 and Llama: train, save, reload from the folder alone, equal logits
(the engine's reload check), or one clear error where the architecture cannot take the method."""

import json
from pathlib import Path

import pytest

from lft_core import METHODS, LftError, RunConfig, run

# peft's LoHa, LoKr, OFT, BOFT and HRA layers do not support GPT-2's Conv1D projections.
CONV1D_UNSUPPORTED = {"loha", "lokr", "oft", "boft", "hra"}


@pytest.mark.parametrize("arch", ["bert", "gpt2", "llama"])
@pytest.mark.parametrize("method", list(METHODS))
def test_method_trains_saves_reloads(method, arch, tiny_models, keyword_csv, tmp_path):
    cfg = RunConfig(model=tiny_models[arch], dataset=keyword_csv, method=method, epochs=1, max_length=32,
                    output=str(tmp_path / "run"))
    if arch == "gpt2" and method in CONV1D_UNSUPPORTED:
        with pytest.raises(LftError, match=f"method '{method}' cannot be applied to this gpt2 model: .*not supported"):
            run(cfg)
        assert not (tmp_path / "run").exists()  # refused before anything was written
        return
    result = run(cfg)
    report = result.report
    assert report.reload_check.passed and report.reload_check.max_abs_diff <= 1e-4
    assert 0 < report.parameters.trainable <= report.parameters.total
    folder = Path(result.run_dir)
    if not METHODS[method].is_peft:
        assert json.loads((folder / "config.json").read_text())["id2label"]["0"] == "food"
    else:
        adapter = json.loads((folder / "adapter_config.json").read_text())
        assert Path(adapter["base_model_name_or_path"]).is_absolute()
        assert (folder / "adapter_model.safetensors").exists()
        if method == "pissa":  # saved as a plain LoRA of rank 2r that loads onto the unmodified base
            assert adapter["r"] == 16 and adapter["init_lora_weights"] is True
    assert not list(folder.glob("*.bin")) and not (folder / "checkpoints").exists()


def test_method_defaults_are_usable():
    from lft_core.methods import typed_params

    for name, spec in METHODS.items():
        assert spec.learning_rate > 0, name
        assert spec.description, name
        assert typed_params(name)[1] == [], name  # its own defaults pass its own checks
        assert set(spec.tunable) <= set(spec.defaults), name  # every slider has a default to show
    assert METHODS["prompt-tuning"].learning_rate > METHODS["lora"].learning_rate > METHODS["full"].learning_rate


def test_unknown_method_lists_the_valid_ones(keyword_csv):
    with pytest.raises(LftError, match="unknown method 'lorax'; choose one of: lora, dora"):
        run(RunConfig(dataset=keyword_csv, method="lorax"))


def test_bad_method_option(tiny_models, keyword_csv, tmp_path):
    with pytest.raises(LftError, match="method 'lora' has no option 'rank'"):
        run(RunConfig(model=tiny_models["bert"], dataset=keyword_csv, method_params={"rank": 4},
                      output=str(tmp_path / "x")))
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("bits", ["4bit", "8bit"])
def test_qlora_trains_and_reloads_on_cpu(bits, keyword_csv, tmp_path):
    """bitsandbytes 4-bit and 8-bit on this CPU; the head stays unquantized; the adapter reloads onto the
    quantized base (the reload check) and onto the full-precision base (reported)."""
    result = run(RunConfig(model="minilm", dataset=keyword_csv, quantize=bits, epochs=3, max_length=32,
                           output=str(tmp_path / bits)))
    report = result.report
    assert report.reload_check.passed
    quantization = report.quantization
    assert quantization["mode"] == bits
    assert quantization["weight_mb_quantized"] < quantization["weight_mb_full_precision"]
    assert quantization["full_precision_reload_accuracy"] >= 0.5
    assert report.finetuned.accuracy > report.base.accuracy


def test_nothing_outside_the_registry_branches_on_a_method_name():
    """A method's special needs live on its MethodSpec: the engine, training, config and UI name no method."""
    import re

    repo = Path(__file__).resolve().parents[1]
    files = [repo / "lft_core" / n for n in ("engine.py", "train.py", "config.py", "runs.py", "evaluate.py")]
    files += list((repo / "ui").glob("*.py"))
    names = "|".join(re.escape(n) for n in METHODS)
    pattern = re.compile(rf"""(==|!=|\bin\b)\s*\(?["']({names})["']|["']({names})["']\s*(==|!=)""")
    hits = [f"{p.name}: {line.strip()}" for p in files for line in p.read_text().splitlines() if pattern.search(line)]
    assert not hits, hits
