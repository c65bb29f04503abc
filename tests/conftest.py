"""Tiny models and data, built here (the Hub is out of reach): BERT, GPT-2 and Llama configs with tokenizers
trained in the test session, and an easy keyword task that a tiny model learns in seconds."""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

WORDS = {
    "sport": "goal match team player score league coach win cup season".split(),
    "tech": "software chip computer phone data code internet robot network app".split(),
    "food": "bread cheese apple soup pasta salad cake rice butter spice".split(),
}
FILLER = "the a of and to in is on with for this that it was".split()


def keyword_frame(n_per_class: int = 40, seed: int = 0) -> pd.DataFrame:
    """Each text mixes filler with 3 words of its class: easy for any model that can learn at all."""
    rng = random.Random(seed)
    rows = []
    for label, words in WORDS.items():
        for _ in range(n_per_class):
            tokens = rng.sample(FILLER, 5) + rng.sample(words, 3)
            rng.shuffle(tokens)
            rows.append({"text": " ".join(tokens), "label": label})
    rng.shuffle(rows)
    return pd.DataFrame(rows)


def _corpus() -> list[str]:
    return keyword_frame(20, seed=1)["text"].tolist() + [" ".join(w) for w in WORDS.values()] + [" ".join(FILLER)]


def _bert_tokenizer():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(_corpus(), trainers.WordPieceTrainer(vocab_size=200, special_tokens=specials))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")


def _bpe_tokenizer(bos: str | None, eos: str):
    """A byte-level BPE tokenizer with no pad token, as decoders ship."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = [t for t in (bos, eos) if t]
    tok.train_from_iterator(_corpus(), trainers.BpeTrainer(vocab_size=300, special_tokens=specials,
                                                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    kwargs = {"eos_token": eos, **({"bos_token": bos} if bos else {})}
    return PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)


def _save_tiny(kind: str, folder: Path) -> Path:
    import torch
    from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if kind == "bert":
        tokenizer = _bert_tokenizer()
        model = BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=128,
                                     pad_token_id=tokenizer.pad_token_id))
    elif kind == "gpt2":
        tokenizer = _bpe_tokenizer(None, "<|endoftext|>")
        model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=128,
                                           bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id))
    else:
        tokenizer = _bpe_tokenizer("<s>", "</s>")
        model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                             num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                             max_position_embeddings=128, bos_token_id=tokenizer.bos_token_id,
                                             eos_token_id=tokenizer.eos_token_id))
    path = folder / f"tiny-{kind}"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("models")
    return {kind: str(_save_tiny(kind, folder)) for kind in ("bert", "gpt2", "llama")}


@pytest.fixture(scope="session")
def keyword_csv(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("data") / "keywords.csv"
    keyword_frame(40).to_csv(path, index=False)
    return str(path)


@pytest.fixture(scope="session", autouse=True)
def isolated_session(tmp_path_factory):
    """Module- and session-scoped fixtures are made before any test's own folders: they too must never write into
    the repo's saved_adapters/ or the user's home."""
    saved = {k: os.environ.get(k) for k in ("LFT_ADAPTERS_DIR", "LFT_CACHE")}
    os.environ["LFT_ADAPTERS_DIR"] = str(tmp_path_factory.mktemp("session") / "saved_adapters")
    os.environ["LFT_CACHE"] = os.environ.get("LFT_TEST_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, monkeypatch):
    """Runs land in a temp saved_adapters/ and cache, never in the repo or the user's home."""
    monkeypatch.setenv("LFT_ADAPTERS_DIR", str(tmp_path / "saved_adapters"))
    cache = Path(os.environ.get("LFT_TEST_CACHE", tmp_path / "cache"))
    monkeypatch.setenv("LFT_CACHE", str(cache))
    yield


def hub_cache_with_the_base(home: Path) -> None:
    """A Hugging Face cache holding sentence-transformers/all-MiniLM-L6-v2 as a download leaves it (HF_HOME=home):
    a machine that has the base model and nothing of lft_core."""
    from lft_core.models import resolve_model

    revision = "0" * 40
    repo = home / "hub" / "models--sentence-transformers--all-MiniLM-L6-v2"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for path in Path(resolve_model("minilm")).iterdir():
        (snapshot / path.name).symlink_to(path)


def plain_peft_predictions_match(folder: Path, tmp_path: Path, max_length: int) -> subprocess.CompletedProcess:
    """Load a run folder with plain peft in a fresh process (no lft_core, no ~/.cache/lft_core, the base from a
    Hugging Face cache) and check it reproduces the run's test predictions. Returns the finished process."""
    import json
    import sys
    import textwrap

    labels = [json.loads((folder / "base_model.json").read_text())["id2label"][str(i)]
              for i in range(json.loads((folder / "base_model.json").read_text())["num_labels"])]
    hub_cache_with_the_base(tmp_path / "hf")
    script = textwrap.dedent(f"""
        import sys, torch, pandas as pd
        from peft import AutoPeftModelForSequenceClassification
        from transformers import AutoTokenizer
        folder, labels = {str(folder)!r}, {labels!r}
        model = AutoPeftModelForSequenceClassification.from_pretrained(
            folder, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={{n: i for i, n in enumerate(labels)}}).eval()
        tokenizer = AutoTokenizer.from_pretrained(folder)
        rows = pd.read_csv(folder + "/test_predictions.csv")
        predicted = []
        for start in range(0, len(rows), 16):
            batch = tokenizer(rows.text.tolist()[start:start + 16], return_tensors="pt", padding=True, truncation=True,
                              max_length={max_length})
            with torch.no_grad():
                predicted += [labels[i] for i in model(**batch).logits.argmax(-1).tolist()]
        assert predicted == rows.finetuned_prediction.tolist(), "predictions differ"
        assert "lft_core" not in sys.modules
        print("ok", len(predicted))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LFT_", "HF_"))}
    env.update(HOME=str(tmp_path / "home"), HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd="/", env=env, timeout=300)
