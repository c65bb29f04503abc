"""Inference speed of a run's deployable forms, side by side in one invocation: texts/s for the merged model in torch
fp32, in torch bf16 (autocast) and the ONNX export in ONNX Runtime, on the same texts in the same batches, with the
CPU's instruction set (lscpu flags: amx, avx512_bf16, avx2) that decides what bf16 costs, and the ONNX parity
figures recorded in the export.

    .venv/bin/python benchmarks/bench_export.py | tee benchmarks/results/bench_export-<date>.txt
    .venv/bin/python benchmarks/bench_export.py --run saved_adapters/<run> --texts 128

By default it exports the committed default-model run (tests/fixtures/run-2dc49eb: minilm, LoRA, bbc-news, max
length 256) into a temporary folder and times bbc-news test texts (the run's 30, repeated to --texts)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def isa() -> str:
    """The instruction-set extensions that matter for bf16 and fp32 matmuls, as lscpu names them."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown (no lscpu)"
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("Flags")), []))
    found = [f for f in ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx512_vnni", "avx2", "fma") if f in flags]
    native = "native bf16 (AMX)" if "amx_bf16" in flags else "native bf16 (AVX512-BF16)" if "avx512_bf16" in flags \
        else "no native bf16: bf16 is emulated"
    return f"{model}; flags: {', '.join(found) or 'none of amx/avx512/avx2'}; {native}"


def batches(tokenizer, texts: list[str], max_length: int, batch_size: int) -> list[dict]:
    """The same padded batches (numpy int64) for every backend, texts sorted by length as lft_core scores them."""
    from lft_core.evaluate import encode

    ids, _ = encode(tokenizer, texts, max_length)
    order = np.argsort([-len(r) for r in ids], kind="stable")
    out = []
    for start in range(0, len(order), batch_size):
        rows = [ids[i] for i in order[start:start + batch_size]]
        width = max(len(r) for r in rows)
        input_ids = np.full((len(rows), width), tokenizer.pad_token_id or 0, dtype=np.int64)
        mask = np.zeros_like(input_ids)
        for j, row in enumerate(rows):
            input_ids[j, :len(row)], mask[j, :len(row)] = row, 1
        out.append({"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)})
    return out


def timed(fn, prepared: list, repeats: int) -> tuple[float, np.ndarray]:
    """Best seconds of `repeats` passes over all batches (after one warm-up pass), and the last pass's logits."""
    fn(prepared[0])
    best, logits = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        logits = np.concatenate([fn(b) for b in prepared])
        best = min(best, time.perf_counter() - start)
    return best, logits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=str(REPO / "tests" / "fixtures" / "run-2dc49eb"))
    parser.add_argument("--texts", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import onnxruntime
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    from lft_core.export import OnnxPredictor, export_merged, export_onnx

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    try:
        run_dir = work / "run"
        shutil.copytree(args.run, run_dir)
        started = time.perf_counter()
        merged = export_merged(run_dir, work / "merged")
        merged_s = time.perf_counter() - started
        started = time.perf_counter()
        onnx = export_onnx(run_dir, work / "onnx")
        onnx_s = time.perf_counter() - started

        cfg = json.loads((run_dir / "run_config.json").read_text())
        model = transformers.AutoModelForSequenceClassification.from_pretrained(str(merged.path)).eval()
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(merged.path))
        import pandas as pd

        texts = pd.read_csv(run_dir / "test_predictions.csv", keep_default_na=False)["text"].astype(str).tolist()
        texts = (texts * (args.texts // len(texts) + 1))[:args.texts]
        prepared = batches(tokenizer, texts, cfg["max_length"], args.batch_size)
        tokens = int(sum(b["attention_mask"].sum() for b in prepared))

        def torch_fp32(b):
            with torch.inference_mode():
                return model(**{k: torch.from_numpy(v) for k, v in b.items()}).logits.numpy()

        def torch_bf16(b):
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                return model(**{k: torch.from_numpy(v) for k, v in b.items()}).logits.float().numpy()

        session = OnnxPredictor(onnx.path, threads=args.threads).session
        names = [i.name for i in session.get_inputs()]
        # ONNX Runtime's pool threads spin while waiting for work by default; on a shared, oversubscribed machine
        # that takes cores from the work itself, so the same model is also timed with spinning off
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        calm = onnxruntime.InferenceSession(str(onnx.path / "model.onnx"), options, providers=["CPUExecutionProvider"])

        def ort(b):
            return session.run(["logits"], {n: b[n] for n in names})[0]

        def ort_calm(b):
            return calm.run(["logits"], {n: b[n] for n in names})[0]

        results = {}
        for name, fn in (("torch fp32", torch_fp32), ("torch bf16 (autocast)", torch_bf16), ("ONNX Runtime fp32", ort),
                         ("ONNX Runtime fp32, no spinning", ort_calm)):
            results[name] = timed(fn, prepared, args.repeats)
        reference = results["torch fp32"][1]

        load = os.getloadavg()
        print(f"# bench_export: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
        print(f"CPU: {isa()}")
        print(f"cores: {os.cpu_count()} (threads used {args.threads}); load average {load[0]:.1f} / {load[1]:.1f} / "
              f"{load[2]:.1f} (1/5/15 min) - this machine is shared with other agents' jobs, so absolute speeds "
              f"are low and noisy; the side-by-side ratios are what this measures")
        print(f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}, "
              f"onnxruntime {onnxruntime.__version__}")
        print(f"run: {Path(args.run).name} ({cfg['model']}, {cfg['method']}, {cfg['dataset']}, max length "
              f"{cfg['max_length']}); {len(texts)} texts, {tokens:,} real tokens, batches of {args.batch_size}, "
              f"best of {args.repeats} passes after a warm-up")
        print(f"export time: merged {merged_s:.1f} s, ONNX {onnx_s:.1f} s (each with its parity check)")
        print()
        print("| backend | texts/s | tokens/s | x torch fp32 | max abs logit diff vs fp32 | same predictions |")
        print("|---|---|---|---|---|---|")
        base_s = results["torch fp32"][0]
        for name, (seconds, logits) in results.items():
            agree = float(np.mean(logits.argmax(-1) == reference.argmax(-1)))
            print(f"| {name} | {len(texts) / seconds:.1f} | {tokens / seconds:.0f} | {base_s / seconds:.2f} | "
                  f"{np.abs(logits - reference).max():.1e} | {agree:.1%} |")
        print()
        p = onnx.parity
        print(f"ONNX parity (export.json, the run's {p['rows']} test rows): {p['agreement']:.1%} of the run's "
              f"predictions, {p['agreement_with_torch']:.1%} of the merged torch model's, max |logit difference| "
              f"{p['max_abs_diff']:.1e}")
        m = merged.parity
        print(f"merged parity (export.json): {m['agreement']:.1%} of the run's predictions, max |logit difference| "
              f"{m['max_abs_diff']:.1e} against the unmerged adapter")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
