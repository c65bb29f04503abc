"""One run end to end on the real embedded model and a small easy task, what it leaves on disk, and that the folder
loads with plain peft on a machine that has only the base model and the folder."""

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

from lft_core import LftError, RunConfig, events, list_runs, run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def minilm_run(tmp_path_factory, keyword_csv):
    out = tmp_path_factory.mktemp("runs") / "minilm-keywords"
    seen = []
    result = run(RunConfig(dataset=keyword_csv, epochs=3, max_length=32, output=str(out)), emit=seen.append)
    return result, seen


def test_finetuned_beats_base_and_the_verdict_says_so(minilm_run):
    report = minilm_run[0].report
    base, tuned = report.base.accuracy, report.finetuned.accuracy
    assert tuned >= 0.9 and tuned > base + 0.3, (base, tuned)
    assert report.verdict.kind == "improved" and report.verdict.headline.startswith("Fine-tuning improved")
    assert report.reload_check.passed
    assert report.finetuned.n == report.base.n == report.data.test
    assert set(report.references) == {"majority", "tfidf"}


def test_run_folder_contents(minilm_run):
    folder = minilm_run[0].run_dir
    for name in ("adapter_config.json", "adapter_model.safetensors", "base_model.json", "tokenizer.json",
                 "tokenizer_config.json", "README.md", "report.json", "report.md", "report.html",
                 "test_predictions.csv", "events.jsonl", "run_config.json", "status.json"):
        assert (folder / name).exists(), name
    assert not (folder / ".staging").exists() and not (folder / "checkpoints").exists()
    report = json.loads((folder / "report.json").read_text())
    for key in ("base_metrics", "finetuned_metrics", "references", "parameters", "timing", "peak_memory_mb", "config",
                "environment", "reload_check", "verdict", "significance", "base_ref"):
        assert key in report, key
    assert report["environment"]["packages"]["peft"]
    assert set(report["finetuned_metrics"]["scores"]) == {"accuracy", "macro_f1"}
    predictions = pd.read_csv(folder / "test_predictions.csv")
    assert list(predictions.columns[:4]) == ["text", "label", "base_prediction", "finetuned_prediction"]
    assert (predictions.label == predictions.finetuned_prediction).mean() == pytest.approx(
        report["finetuned_metrics"]["scores"]["accuracy"])
    md = (folder / "report.md").read_text()
    assert "| accuracy |" in md and report["verdict"]["headline"] in md
    html = (folder / "report.html").read_text()
    assert "DecompressionStream" in html and "Plotly.newPlot" in html and "https://" not in html.split("<script>")[1][:200]
    card = (folder / "README.md").read_text()
    front = card.split("---")[1]
    assert "library_name: peft" in front and "base_model: sentence-transformers/all-MiniLM-L6-v2" in front
    assert "PeftModel.from_pretrained(base" in card and "num_labels=len(labels)" in card


def test_events_in_order_in_one_log(minilm_run):
    kinds = [type(e).__name__ + (f":{e.phase}" if isinstance(e, events.Progress) else "") for e in minilm_run[1]]
    order = ["DataLoaded", "Parameters", "Started", "Scored", "Progress:train", "EpochEnd", "Finished"]
    assert [kinds.index(k) for k in order] == sorted(kinds.index(k) for k in order), kinds
    assert kinds[-1] == "Finished"
    on_disk = events.read_all(minilm_run[0].run_dir / "events.jsonl")
    assert [type(e).__name__ for e in on_disk] == [type(e).__name__ for e in minilm_run[1]]
    losses = [e for e in on_disk if isinstance(e, events.Progress) and e.phase == "train"]
    assert losses[0].step == 1 and losses[1].step == 2  # a loss point from the very first step
    # from step 1 the ETA leans on the calibrated step time; measured steps take over as they come
    assert losses[0].eta_s is not None and losses[0].eta_s > 0 and losses[1].eta_s is not None and losses[1].eta_s > 0


def test_folder_loads_with_plain_peft_on_a_machine_with_only_the_base(minilm_run, tmp_path):
    """Fresh process, no ~/.cache/lft_core, no lft_core import, the base resolved from its recorded Hub name."""
    from conftest import plain_peft_predictions_match

    out = plain_peft_predictions_match(minilm_run[0].run_dir, tmp_path, max_length=32)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("ok") and not (tmp_path / "home" / ".cache" / "lft_core").exists()


def test_listed_as_complete(minilm_run):
    found = list_runs(minilm_run[0].run_dir.parent)
    assert found[0].status == "complete" and found[0].scores["accuracy"] >= 0.9


def test_refuses_non_empty_output_and_keeps_user_files(keyword_csv, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    cfg = RunConfig(dataset=keyword_csv, epochs=1, max_length=32, output=str(out))
    with pytest.raises(LftError, match="exists and is not empty; pass --overwrite"):
        run(cfg)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    cfg.overwrite = True  # a folder that was never a run is not ours to overwrite (issue 21)
    with pytest.raises(LftError, match="is not a run folder of lft_core .* holds notes.txt"):
        run(cfg)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"] and (out / "notes.txt").read_text() == "precious"


def test_hosted_model_size_cap(keyword_csv, tmp_path, monkeypatch):
    monkeypatch.setenv("LFT_MAX_MODEL_PARAMS", "1e6")
    with pytest.raises(LftError, match="this host allows at most 1M"):
        run(RunConfig(dataset=keyword_csv, output=str(tmp_path / "x")))
    assert not (tmp_path / "x").exists()


def test_hosted_limits_clamp_the_config(monkeypatch):
    from lft_core import apply_host_limits

    monkeypatch.setenv("LFT_MAX_EPOCHS", "2")
    monkeypatch.setenv("LFT_MAX_TRAIN_SAMPLES", "500")
    cfg, notes = apply_host_limits(RunConfig(epochs=5))
    assert cfg.epochs == 2 and cfg.max_train_samples == 500 and len(notes) == 2


def test_baseline_is_cached_by_key_and_reused(tiny_models, keyword_csv, tmp_path):
    from lft_core import evaluate_base, load_data

    cfg = RunConfig(model=tiny_models["bert"], dataset=keyword_csv, max_length=32)
    first = evaluate_base(cfg)
    again = evaluate_base(cfg)
    assert again.key == first.key and (again.logits == first.logits).all()
    assert evaluate_base(RunConfig(model=tiny_models["bert"], dataset=keyword_csv, max_length=24)).key != first.key
    assert evaluate_base(RunConfig(model=tiny_models["bert"], dataset=keyword_csv, max_length=32, seed=7)).key != first.key
    cached = list((tmp_path / "saved_adapters" / ".baselines").glob("*.json"))
    assert {p.stem for p in cached} >= {first.key}
    data = load_data(cfg)
    assert len(first.logits) == len(data["test"])


def test_training_precision_is_chosen_and_recorded(tiny_models, keyword_csv, tmp_path):
    from safetensors.torch import load_file

    from lft_core.hardware import choose_compute

    assert choose_compute("fp32").precision == "fp32" and choose_compute("bf16").precision == "bf16"
    assert choose_compute("auto", quantized=True).precision == "fp32"  # QLoRA keeps bitsandbytes' compute dtype
    weights = {}
    for precision in ("bf16", "fp32"):
        result = run(RunConfig(model=tiny_models["bert"], dataset=keyword_csv, epochs=1, max_length=32,
                               precision=precision, output=str(tmp_path / precision)))
        report = result.report
        assert report.training_precision == precision
        # the reload check is fp32 on its rows whatever the training precision: the saved adapter reproduces it
        assert report.scoring.precision == precision
        assert report.reload_check.passed and report.reload_check.max_abs_diff <= 1e-4
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

    import lft_core.estimate as estimate_module

    requested, chosen, original = [], [], train_module.attention_implementation
    original_choice = estimate_module.attention_choice

    def spy(model, implementation):
        requested.append(implementation)
        return original(model, implementation)

    def spy_choice(*args, **kwargs):
        chosen.append(original_choice(*args, **kwargs))
        return chosen[-1]

    monkeypatch.setattr(train_module, "attention_implementation", spy)
    monkeypatch.setattr(estimate_module, "attention_choice", spy_choice)
    for precision in ("bf16", "fp32"):
        requested.clear(), chosen.clear()
        run(RunConfig(model=tiny_models["bert"], dataset=keyword_csv, epochs=1, max_length=32, precision=precision,
                      output=str(tmp_path / precision)))
        # bf16 on a CPU trains with eager attention (measured faster on every CPU kind so far); fp32 never swaps
        assert len(chosen) == 1 and chosen[0] == ("eager" if precision == "bf16" else None)
        assert requested and requested[-1] == chosen[0]


def test_class_weights_balance_the_loss(tiny_models, tmp_path):
    import torch

    from lft_core.train import _class_weights

    weights = _class_weights([0] * 88 + [1] * 12, 2)
    assert torch.allclose(weights, torch.tensor([100 / (2 * 88), 100 / (2 * 12)]))
    from conftest import keyword_frame

    frame = keyword_frame(40)
    frame = pd.concat([frame[frame.label == "food"], frame[frame.label != "food"].head(12)])
    path = tmp_path / "skewed.csv"
    frame.to_csv(path, index=False)
    result = run(RunConfig(model=tiny_models["bert"], dataset=str(path), epochs=1, max_length=32, class_weights=True,
                           output=str(tmp_path / "weighted")))
    assert result.report.config["class_weights"] is True


def _tiny_lora_and_varied_texts(tiny_bert: str, n: int = 64):
    import random

    import datasets
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from conftest import FILLER, keyword_frame

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=3, hidden_dropout_prob=0.0,
                                                               attention_probs_dropout_prob=0.0)
    model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["query", "value"]))
    frame, rng = keyword_frame(n // 3 + 6), random.Random(0)
    frame["text"] = [text + " " + " ".join(rng.choices(FILLER, k=rng.randrange(0, 40))) for text in frame["text"]]
    names = sorted(frame["label"].unique())
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)})
    split = lambda rows: datasets.Dataset.from_dict(  # noqa: E731
        {"text": list(rows["text"]), "label": [names.index(x) for x in rows["label"]]}, features=features)
    data = datasets.DatasetDict(train=split(frame.iloc[:n]), validation=split(frame.iloc[n:n + 16]))
    return model, AutoTokenizer.from_pretrained(tiny_bert), data


def test_length_sorted_micro_batches_train_the_same_batches_to_the_same_weights(tiny_models, tmp_path):
    """A batch computed as length-sorted halves (less padding) is the same batch with the same gradient: the
    sampler only reorders texts inside each batch, and each half's loss counts for half."""
    import torch

    from lft_core.train import TrainArgs, _EpochSeededSampler, micro_batches, train

    lengths = [3, 9, 1, 7, 5, 2, 8, 4, 6, 10]
    plain = list(_EpochSeededSampler(10, seed=3, batch_size=4))
    ordered = list(_EpochSeededSampler(10, seed=3, lengths=lengths, batch_size=4))
    for start in (0, 4, 8):
        batch = ordered[start:start + 4]
        assert sorted(batch) == sorted(plain[start:start + 4])
        assert [lengths[i] for i in batch] == sorted((lengths[i] for i in batch), reverse=True)
    assert [micro_batches(b) for b in (8, 16, 24, 32, 36, 48, 64, 66)] == [1, 1, 1, 2, 2, 3, 4, 3]

    trained = {}
    for micro in (1, 2):
        model, tokenizer, data = _tiny_lora_and_varied_texts(tiny_models["bert"])
        before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        args = TrainArgs(epochs=1, learning_rate=1e-2, batch_size=32, eval_batch_size=None, max_length=64, seed=0,
                         micro_batches=micro, save_steps=1000)
        result = train(model, tokenizer, data, args, tmp_path / f"micro{micro}")
        trained[micro] = ({n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad},
                          result.losses)
        assert result.steps == 2
        assert any(not torch.equal(before[n], p) for n, p in trained[micro][0].items())
    (one, losses_one), (two, losses_two) = trained[1], trained[2]
    assert losses_one[0][0] == losses_two[0][0] == 1
    assert losses_two[0][1] == pytest.approx(losses_one[0][1], rel=1e-5)  # a half's loss is not counted whole
    for name, value in one.items():
        torch.testing.assert_close(two[name], value, rtol=1e-4, atol=1e-5)


def test_default_batches_and_learning_rate_follow_the_text_lengths():
    from lft_core.train import auto_batch_size, default_learning_rate, micro_batches

    tweets = [30] * 1700 + [40] * 300  # 90th percentile 40 tokens
    assert auto_batch_size(tweets, max_length=256) == 32 and micro_batches(32) == 2
    assert auto_batch_size([600] * 2000, max_length=256) == 8 and micro_batches(8) == 1  # long articles, cut at 256
    assert auto_batch_size(tweets[:400], max_length=256) == 8  # 50 steps an epoch at least
    assert default_learning_rate(2e-3, 8) == default_learning_rate(2e-3, 16) == 2e-3
    assert default_learning_rate(2e-3, 32) == pytest.approx(2e-3 * 2 ** 0.5)


def test_the_epoch_estimate_counts_the_calls_training_makes():
    """The run estimate counts what training computes: each call padded to its own longest
    text, length-sorted halves for large batches, so padding and the batch size change the estimate."""
    from lft_core.estimate import CallCost, Calibration, estimate_run
    from lft_core.train import call_shapes

    lengths = [10, 50] * 32  # 64 texts
    halves = call_shapes(lengths, batch_size=32)
    assert len(halves) == 4 and sum(texts for texts, _ in halves) == 64  # 2 batches, 2 calls each
    sorted_batches = [sorted((lengths[i] for i in batch), reverse=True) for batch in
                      _batches(lengths, 32)]
    assert [padded for _, padded in halves] == [max(half) for batch in sorted_batches
                                                for half in (batch[:16], batch[16:])]
    assert call_shapes(lengths, batch_size=8)[0][0] == 8  # small batches: one call each, as drawn
    assert sum(t * p for t, p in call_shapes([20] * 64, batch_size=16)) == 64 * 20  # nothing to pad

    from lft_core.models import load_model_config

    # the same measured costs: more padding or a longer validation split means a longer estimate
    config = load_model_config("minilm")
    costs = Calibration(train=CallCost(0.01, 1e11), infer=CallCost(0.005, 2e11), threads=1)

    def run_seconds(train_lengths, validation):
        return estimate_run(costs, config, call_shapes(train_lengths, 16), validation, [30] * 64, epochs=1)

    padded = run_seconds(lengths, [30] * 8)
    assert padded.epoch > run_seconds([30] * 64, [30] * 8).epoch  # same real tokens, more padding
    assert run_seconds(lengths, [30] * 64).validation > padded.validation
    assert padded.total == pytest.approx(sum(padded.phases().values()))


def _batches(lengths, batch_size):
    from lft_core.train import _EpochSeededSampler

    order = list(_EpochSeededSampler(len(lengths), seed=0, batch_size=batch_size))
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


def test_run_time_is_measured_here_and_writes_nothing(tiny_models, keyword_csv):
    from lft_core import adapters_root, estimate_run_time
    from lft_core.estimate import CallCost, Calibration, RunEstimate

    before = sorted(adapters_root().rglob("*")) if adapters_root().exists() else []
    found = estimate_run_time(RunConfig(model=tiny_models["bert"], dataset=keyword_csv, epochs=2, max_length=32))
    assert found.epoch > 0 and found.validation > 0 and found.evaluate > 0 and found.startup > 0
    assert found.train == pytest.approx(2 * found.epoch + 2 * found.validation)
    assert found.calibration.threads >= 1 and found.calibration.seconds > 0
    assert "for the whole run on this machine" in found.describe() and "2 epochs" in found.describe()
    assert (sorted(adapters_root().rglob("*")) if adapters_root().exists() else []) == before  # a dry run

    # large held-out splits that take most of the run: the estimate says so and offers the cap
    costs = Calibration(train=CallCost(0.0, 1e12), infer=CallCost(0.0, 1e12), threads=1)
    slow_scoring = RunEstimate(baseline=60, epoch=20, validation=60, epochs=1, save=2, evaluate=60, reference=1,
                               calibration=costs, splits={"train": 500, "validation": 1440, "test": 1440})
    assert "max_eval_samples=500" in slow_scoring.describe()
    quick_scoring = dataclasses.replace(slow_scoring, baseline=2, validation=2, evaluate=2)
    assert "max_eval_samples" not in quick_scoring.describe()
