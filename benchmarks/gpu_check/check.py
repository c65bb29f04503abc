"""The GPU path in one go: a bare run, a 4-bit QLoRA run, a GPT-2-shaped decoder run and an app smoke test,
each printing its figures. Run by run.sh on a machine with a CUDA GPU (see prepare.sh for what travels there).
Each part checks what the hardware issue asks of the GPU path: that scoring runs on the training device, in the
precision chosen for it (native bf16 only at compute capability 8.0 or more, else fp16 with a gradient scaler)."""

from __future__ import annotations

import json
import sys
import time
import traceback
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
GPU = ROOT / ".gpu"
SMOKE = "--cpu-smoke" in sys.argv
"""Here, without a GPU: every part on a few rows, to check the script itself before a GPU session spends time."""
SMALL = {"max_train_samples": 48, "max_eval_samples": 24, "epochs": 1} if SMOKE else {}


def part(name: str):
    def wrap(fn):
        def run():
            print(f"\n== {name}", flush=True)
            start = time.perf_counter()
            try:
                fn()
                print(f"-- {name}: ok in {time.perf_counter() - start:.1f} s", flush=True)
            except Exception as exc:  # a part that fails must not hide the others' figures
                traceback.print_exc(limit=3)
                print(f"-- {name}: FAILED in {time.perf_counter() - start:.1f} s: {exc}", flush=True)
        return run
    return wrap


def minilm() -> str:
    """The carried MiniLM as an fp32 folder (prepare.sh ships it as fp16 with int8 embedding rows)."""
    import shutil

    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModel

    folder = Path("/tmp/minilm")
    if (folder / "model.safetensors").exists():
        return str(folder)
    state = {k: v.float() for k, v in load_file(GPU / "minilm" / "rest.safetensors").items()}
    packed = torch.load(GPU / "minilm" / "embeddings.pt")
    state[packed["key"]] = packed["int8"].float() * packed["scale"].float()
    model = AutoModel.from_config(AutoConfig.from_pretrained(GPU / "minilm"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and not [k for k in missing if "position_ids" not in k], (missing, unexpected)
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        if (GPU / "minilm" / name).exists():
            shutil.copy(GPU / "minilm" / name, folder / name)
    print("MiniLM rebuilt from the carry (embedding rows int8-rounded: accuracy may differ slightly from the "
          "packaged model's)")
    return str(folder)


def summarize(result, wall: float) -> None:
    report = result.report
    tuned, base = report.finetuned.scores["accuracy"], report.base.scores["accuracy"]
    tfidf = report.references["tfidf"].scores.get("accuracy") if "tfidf" in report.references else None
    print(json.dumps({"wall_s": round(wall, 1), "train_s": round(report.timing.train_s, 1),
                      "train_tokens_per_s": round(report.throughput.train_tokens_per_s),
                      "accuracy": round(tuned, 4), "base_accuracy": round(base, 4), "tfidf_accuracy": tfidf,
                      "training_precision": report.training_precision, "scoring": report.scoring.to_dict(),
                      "reload_check": report.reload_check.to_dict(), "peak_rss_mb": round(report.peak_memory_mb)}),
          flush=True)
    if not SMOKE:
        assert report.scoring.device == "cuda", f"scored on {report.scoring}, not on the training device"


@part("environment")
def environment():
    import torch

    from lft_core.hardware import choose_compute, describe_machine

    compute = choose_compute("auto")
    print(f"lft_core chooses {compute.describe()} ({compute.why}); host: {describe_machine()}")
    if not SMOKE:
        print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}, compute "
              f"capability {torch.cuda.get_device_capability(0)}; is_bf16_supported() {torch.cuda.is_bf16_supported()}")
        assert compute.device == "cuda"
    for capability, expected in (((7, 5), "fp16"), ((7, 0), "fp16"), ((8, 0), "bf16"), ((9, 0), "bf16")):
        assert choose_compute("auto", cuda=True, capability=capability).precision == expected


@part("bare run (the defaults of `python -m lft_core run`: MiniLM, bbc-news, 2 epochs)")
def bare_run():
    from lft_core import RunConfig, run

    start = time.perf_counter()
    result = run(RunConfig(model=minilm(), dataset=str(GPU / "bbc-news"), output="/tmp/runs/bare",
                           overwrite=True, **SMALL))
    summarize(result, time.perf_counter() - start)


@part("4-bit QLoRA (airline tweets, 1 epoch)")
def qlora():
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        print("skipped: bitsandbytes is not installed here (prepare.sh --qlora carries it)")
        return
    from lft_core import RunConfig, run

    start = time.perf_counter()
    result = run(RunConfig(model=minilm(), dataset=str(GPU / "airline-tweets"), quantize="4bit",
                           output="/tmp/runs/qlora", overwrite=True, **{"epochs": 1, **SMALL}))
    summarize(result, time.perf_counter() - start)


@part("GPT-2-shaped decoder (12 x 768, random weights: speed and the decoder path, not accuracy), airline tweets")
def decoder():
    from transformers import AutoConfig, AutoTokenizer, GPT2ForSequenceClassification

    from lft_core import RunConfig, run

    folder = Path("/tmp/gpt2-shaped")
    model = GPT2ForSequenceClassification(AutoConfig.from_pretrained(GPU / "gpt2-shaped"))
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(GPU / "minilm").save_pretrained(folder)
    start = time.perf_counter()
    result = run(RunConfig(model=str(folder), dataset=str(GPU / "airline-tweets"), output="/tmp/runs/decoder",
                           overwrite=True, **{"epochs": 1, "max_train_samples": 4000, **SMALL}))
    summarize(result, time.perf_counter() - start)


@part("app smoke test (the app's training path: a warm `python -m lft_core worker` given a run; then its page if "
      "gradio is here; live prediction with the GPU run)")
def app_smoke():
    import subprocess

    import yaml

    config = Path("/tmp/app-smoke.yaml")
    config.write_text(yaml.safe_dump({"model": minilm(), "dataset": str(GPU / "airline-tweets"), "epochs": 1,
                                      "max_train_samples": 256, "max_eval_samples": 128}))
    worker = subprocess.Popen([sys.executable, "-m", "lft_core", "worker"], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = worker.communicate(json.dumps(["run", "--config", str(config), "--output", "/tmp/runs/app-smoke",
                                            "--overwrite"]) + "\n", timeout=300)
    assert worker.returncode == 0, out[-2000:]
    from lft_core import read_report

    report = read_report("/tmp/runs/app-smoke")
    print(f"worker run: accuracy {report.finetuned.scores['accuracy']:.4f}, scored in {report.scoring.to_dict()}")
    from lft_core import Predictor

    predictor = Predictor("/tmp/runs/app-smoke")
    print(f"live prediction on {predictor.compute.describe()}:",
          predictor.predict(["my flight was delayed four hours and nobody told us"]).to_dict("records"))
    try:
        import gradio  # noqa: F401
    except ImportError:
        print("page: skipped, gradio is not installed here (it does not fit in the carry beside the model)")
        return
    import app

    demo = app.build_app()
    demo.queue().launch(prevent_thread_lock=True, server_port=7861)
    try:
        page = urllib.request.urlopen("http://127.0.0.1:7861/", timeout=30).read().decode()
        assert "Lightweight fine-tuning studio" in page
        print(f"page served: {len(page)} bytes")
    finally:
        demo.close()


if __name__ == "__main__":
    for check in (environment, bare_run, qlora, decoder, app_smoke):
        check()
