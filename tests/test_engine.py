"""One run end to end on the real embedded model and a small easy task, and what it leaves on disk."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from lft_core import LftError, RunConfig, list_runs, run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def minilm_run(tmp_path_factory, keyword_csv):
    out = tmp_path_factory.mktemp("runs") / "minilm-keywords"
    events = []
    result = run(RunConfig(dataset=keyword_csv, epochs=3, max_length=32, output=str(out)), emit=events.append)
    return result, events


def test_finetuned_beats_base(minilm_run):
    report = minilm_run[0].report
    base, tuned = report["base_metrics"]["accuracy"], report["finetuned_metrics"]["accuracy"]
    assert tuned >= 0.9 and tuned > base + 0.3, (base, tuned)
    assert report["reload_check"]["passed"]
    assert report["finetuned_metrics"]["n"] == report["base_metrics"]["n"] == report["data"]["test"]


def test_run_folder_contents(minilm_run):
    folder = minilm_run[0].run_dir
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "README.md", "report.json", "report.md", "report.html", "test_predictions.csv", "events.jsonl"):
        assert (folder / name).exists(), name
    assert not (folder / ".staging").exists() and not (folder / "checkpoints").exists()
    report = json.loads((folder / "report.json").read_text())
    for key in ("base_metrics", "finetuned_metrics", "parameters", "timing", "peak_memory_mb", "config",
                "environment", "reload_check", "seed"):
        assert key in report, key
    assert report["environment"]["packages"]["peft"]
    assert set(report["finetuned_metrics"]) >= {"accuracy", "macro_f1", "per_class", "confusion"}
    predictions = pd.read_csv(folder / "test_predictions.csv")
    assert list(predictions.columns[:4]) == ["text", "label", "base_prediction", "finetuned_prediction"]
    assert (predictions.label == predictions.finetuned_prediction).mean() == pytest.approx(
        report["finetuned_metrics"]["accuracy"])
    md = (folder / "report.md").read_text()
    assert "| accuracy |" in md and report["verdict"] in md
    html = (folder / "report.html").read_text()
    assert "DecompressionStream" in html and "Plotly.newPlot" in html and "https://" not in html.split("<script>")[1][:200]
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: peft") and "AutoPeftModelForSequenceClassification" in card


def test_events_in_order(minilm_run):
    events = [e["event"] for e in minilm_run[1]]
    assert events.index("data") < events.index("metrics") < events.index("progress") < events.index("epoch")
    assert events[-1] == "finished"
    on_disk = [json.loads(line)["event"] for line in (minilm_run[0].run_dir / "events.jsonl").read_text().splitlines()]
    assert on_disk == events


def test_reload_in_a_fresh_process_without_lft_core(minilm_run):
    folder = minilm_run[0].run_dir
    script = textwrap.dedent(f"""
        import sys, torch, pandas as pd
        from peft import AutoPeftModelForSequenceClassification
        from transformers import AutoTokenizer
        model = AutoPeftModelForSequenceClassification.from_pretrained({str(folder)!r}).eval()
        tokenizer = AutoTokenizer.from_pretrained({str(folder)!r})
        rows = pd.read_csv({str(folder / 'test_predictions.csv')!r})
        batch = tokenizer(rows.text.tolist(), return_tensors="pt", padding=True, truncation=True, max_length=32)
        with torch.no_grad():
            ids = model(**batch).logits.argmax(-1).tolist()
        predicted = [model.config.id2label[i] for i in ids]
        assert predicted == rows.finetuned_prediction.tolist(), (predicted, rows.finetuned_prediction.tolist())
        assert "lft_core" not in sys.modules
        print("ok", len(predicted))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("ok")


def test_listed_as_complete(minilm_run):
    runs = list_runs(minilm_run[0].run_dir.parent)
    assert runs[0]["status"] == "complete"


def test_refuses_non_empty_output_and_keeps_user_files(keyword_csv, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    cfg = RunConfig(dataset=keyword_csv, epochs=1, max_length=32, output=str(out))
    with pytest.raises(LftError, match="exists and is not empty; pass --overwrite"):
        run(cfg)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    cfg.overwrite = True
    run(cfg)
    assert (out / "notes.txt").read_text() == "precious" and (out / "adapter_config.json").exists()


def test_bad_config_values_all_reported_at_once(keyword_csv):
    with pytest.raises(LftError) as err:
        run(RunConfig(dataset=keyword_csv, epochs=0, learning_rate=-1, method_params={"r": 0}))
    message = str(err.value)
    assert "epochs must be > 0" in message and "learning_rate must be > 0" in message and "method_params.r" in message


def test_hosted_model_size_cap(keyword_csv, tmp_path, monkeypatch):
    monkeypatch.setenv("LFT_MAX_MODEL_PARAMS", "1e6")
    with pytest.raises(LftError, match="this host allows at most 1M"):
        run(RunConfig(dataset=keyword_csv, output=str(tmp_path / "x")))
    assert not (tmp_path / "x").exists()


def test_hosted_limits_clamp_the_app_config(monkeypatch):
    from ui.state import apply_limits

    monkeypatch.setenv("LFT_MAX_EPOCHS", "2")
    monkeypatch.setenv("LFT_MAX_TRAIN_SAMPLES", "500")
    cfg, notes = apply_limits(RunConfig(epochs=5))
    assert cfg.epochs == 2 and cfg.max_train_samples == 500 and len(notes) == 2


def test_run_names_stay_inside_saved_adapters(tmp_path):
    from lft_core.runs import resolve_run, safe_name

    assert safe_name("../../etc/passwd") == "etc-passwd"
    assert "/" not in safe_name("a/b\\\\c d")
    with pytest.raises(LftError):
        safe_name("../..")
    with pytest.raises(LftError, match="not a folder directly inside"):
        resolve_run("../outside", root=tmp_path)


def test_training_precision_is_chosen_and_recorded(tiny_models, keyword_csv, tmp_path):
    from safetensors.torch import load_file

    from lft_core.train import training_precision

    assert training_precision("fp32", None) == "fp32" and training_precision("bf16", None) == "bf16"
    assert training_precision("auto", "4bit") == "fp32"  # QLoRA keeps bitsandbytes' compute dtype
    weights = {}
    for precision in ("bf16", "fp32"):
        result = run(RunConfig(model=tiny_models["bert"], dataset=keyword_csv, epochs=1, max_length=32,
                               precision=precision, output=str(tmp_path / precision)))
        report = result.report
        assert report["training_precision"] == precision
        # evaluation is fp32 whatever the training precision, so the saved adapter reproduces it exactly
        assert report["reload_check"]["passed"] and report["reload_check"]["max_abs_diff"] <= 1e-4
        weights[precision] = load_file(result.run_dir / "adapter_model.safetensors")
    assert any(not (weights["bf16"][k] == weights["fp32"][k]).all() for k in weights["fp32"])  # bf16 really ran
    with pytest.raises(LftError, match="precision must be"):
        run(RunConfig(dataset=keyword_csv, precision="fp16"))


def test_cpu_bf16_training_swaps_to_eager_attention_and_back(tiny_models, keyword_csv, tmp_path, monkeypatch):
    from transformers import AutoModelForSequenceClassification

    import lft_core.train as train_module

    model = AutoModelForSequenceClassification.from_pretrained(tiny_models["bert"], num_labels=2)
    assert model.config._attn_implementation == "sdpa"
    with train_module.attention_implementation(model, "eager"):
        assert model.config._attn_implementation == "eager"
    assert model.config._attn_implementation == "sdpa"
    with pytest.raises(RuntimeError), train_module.attention_implementation(model, "eager"):
        raise RuntimeError("a failing step")
    assert model.config._attn_implementation == "sdpa"  # restored even when the step fails

    requested, original = [], train_module.attention_implementation

    def spy(model, implementation):
        requested.append(implementation)
        return original(model, implementation)

    monkeypatch.setattr(train_module, "attention_implementation", spy)
    for precision in ("bf16", "fp32"):
        requested.clear()
        run(RunConfig(model=tiny_models["bert"], dataset=keyword_csv, epochs=1, max_length=32, precision=precision,
                      output=str(tmp_path / precision)))
        assert requested and set(requested) == ({"eager"} if precision == "bf16" else {None})
