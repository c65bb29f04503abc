#!/usr/bin/env bash
# Run HERE (the CPU machine, repo root, after scripts/setup.sh): builds .gpu/, the folder a GPU session carries to
# the device machine, which has torch, accelerate, scikit-learn and pandas but not this project's pinned libraries,
# its packaged model or its packaged data, and cannot download anything. Keep .gpu/ under 64 MiB (the carry limit).
#   bash benchmarks/gpu_check/prepare.sh            # wheels, MiniLM in fp16, bbc-news and airline tweets as parquet
#   bash benchmarks/gpu_check/prepare.sh --qlora    # adds bitsandbytes instead of the model weights (size)
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
rm -rf .gpu && mkdir -p .gpu/wheels
PY=.venv/bin/python
download() {
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d .gpu/wheels "$@"
}
# the versions requirements.txt pins, where the device's own differ or are missing
download "$(grep -E '^transformers==' requirements.txt)" "$(grep -E '^peft==' requirements.txt)" \
  "$(grep -E '^datasets==' requirements.txt)" "$(grep -E '^huggingface_hub==' requirements.txt)" \
  "$(grep -E '^tokenizers==' requirements.txt)" "$(grep -E '^evaluate==' requirements.txt)" dill multiprocess
if [ "${1:-}" = "--qlora" ]; then
  download "$(grep -E '^bitsandbytes==' requirements.txt)"
fi
HF_HUB_OFFLINE=1 "$PY" - "${1:-}" <<'PY'
import sys
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer, GPT2Config, GPT2ForSequenceClassification
from lft_core import RunConfig, load_data
from lft_core.models import resolve_model

qlora = sys.argv[1] == "--qlora"
path = resolve_model("minilm")
tokenizer = AutoTokenizer.from_pretrained(path)
model = AutoModel.from_pretrained(path)  # the encoder alone: each run puts its own head on it
if qlora:  # the weights do not fit beside bitsandbytes: a MiniLM-shaped model, random weights (speed only)
    model = AutoModel.from_config(model.config)
# fp16 halves the carry, and the word embeddings (half the weights) travel as int8 rows with a scale each, so the
# folder fits beside the wheels; check.py rebuilds an fp32 folder from them
state = {k: v.to(torch.float16) for k, v in model.state_dict().items()}
key = next(k for k in state if k.endswith("word_embeddings.weight"))
rows = state.pop(key).float()
scale = rows.abs().amax(dim=1, keepdim=True).clamp(min=1e-8) / 127
Path(".gpu/minilm").mkdir(parents=True, exist_ok=True)
torch.save({"key": key, "int8": torch.round(rows / scale).to(torch.int8), "scale": scale.half()},
           ".gpu/minilm/embeddings.pt")
from safetensors.torch import save_file
save_file({k: v.contiguous() for k, v in state.items()}, ".gpu/minilm/rest.safetensors")
model.config.save_pretrained(".gpu/minilm")
tokenizer.save_pretrained(".gpu/minilm")
# a GPT-2-shaped decoder (12 layers, 768 wide), random weights: the decoder path's speed and padding, not accuracy
gpt2 = GPT2ForSequenceClassification(GPT2Config(vocab_size=len(tokenizer), n_positions=512, n_layer=12, n_embd=768,
                                                n_head=12, pad_token_id=tokenizer.pad_token_id,
                                                bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id))
gpt2.config.save_pretrained(".gpu/gpt2-shaped")
# (its tokenizer is MiniLM's: check.py copies it from .gpu/minilm)
for name in ("bbc-news", "airline-tweets"):
    data = load_data(RunConfig(dataset=name))
    names = data["train"].features["label"].names
    for split in ("train", "validation", "test"):
        frame = data[split].to_pandas()
        frame["label"] = [names[i] for i in frame["label"]]
        Path(f".gpu/{name}").mkdir(exist_ok=True)
        frame[["text", "label"]].to_parquet(f".gpu/{name}/{split}.parquet")
PY
du -sh .gpu
