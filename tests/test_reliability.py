"""Reliability: a run killed mid-epoch resumes to the same result, a kill or a full disk while saving never
leaves a folder that looks finished, non-finite losses stop with the step, and 2-process DDP counts each
test example once."""

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lft_core import LftError, RunConfig, list_runs, run
from lft_core.runs import is_complete

REPO = Path(__file__).resolve().parents[1]


def _cli(args, **kw):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "lft_core", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _flags(model, data, out, extra=()):
    return ["run", "--model", model, "--dataset", data, "--max-length", "32", "--epochs", "3", "--batch-size", "4",
            "--save-steps", "5", "--output", str(out), "--learning-rate", "0.01", *extra]


def test_resume_after_sigkill_matches_uninterrupted_run(tiny_models, keyword_csv, tmp_path):
    reference = _cli(_flags(tiny_models["bert"], keyword_csv, tmp_path / "reference"))
    assert reference.wait(timeout=600) == 0, reference.stderr.read()[-2000:]

    killed_dir = tmp_path / "killed"
    victim = _cli(_flags(tiny_models["bert"], keyword_csv, killed_dir))
    deadline = time.time() + 300
    # kill mid-epoch 2: after a checkpoint past the first epoch (24 steps per epoch at batch 4) exists
    while time.time() < deadline:
        done = [p for p in (killed_dir / "checkpoints").glob("checkpoint-*") if (p / "trainer_state.json").exists()]
        if any(int(p.name.split("-")[1]) >= 30 for p in done):
            break
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not is_complete(killed_dir)
    assert [r.status for r in list_runs(tmp_path) if r.name == "killed"] == ["interrupted"]

    resumed = _cli(["run", "--resume", str(killed_dir)])
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-3000:]
    a = json.loads((tmp_path / "reference" / "report.json").read_text())
    b = json.loads((killed_dir / "report.json").read_text())
    assert [e["epoch"] for e in b["history"]["epochs"]] == [1, 2, 3]
    assert a["finetuned_metrics"]["scores"] == b["finetuned_metrics"]["scores"]
    wa = load_file(tmp_path / "reference" / "adapter_model.safetensors")
    wb = load_file(killed_dir / "adapter_model.safetensors")
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], atol=1e-5, rtol=1e-4)


def test_kill_during_save_never_looks_complete(tiny_models, keyword_csv, tmp_path):
    """The worker dies right after the first file is renamed into place."""
    out = tmp_path / "run"
    script = (
        "import os, signal, lft_core.runs as runs\n"
        "real = os.replace\n"
        "def dying_replace(a, b):\n"
        "    real(a, b)\n"
        "    if '.staging' in str(a):\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "runs.os.replace = dying_replace\n"
        "from lft_core.cli import main\n"
        f"main({_flags(tiny_models['bert'], keyword_csv, out)!r})\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == -signal.SIGKILL
    assert not is_complete(out) and not (out / "report.json").exists() and not (out / "adapter_config.json").exists()
    assert [r.status for r in list_runs(tmp_path)] == ["interrupted"]


def test_disk_full_while_saving_keeps_previous_adapter(tiny_models, keyword_csv, tmp_path, monkeypatch):
    out = tmp_path / "run"
    cfg = RunConfig(model=tiny_models["bert"], dataset=keyword_csv, epochs=1, max_length=32, output=str(out))
    run(cfg)
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.iterdir() if p.is_file()
              and p.name not in ("status.json", "events.jsonl", "run_config.json")}

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("lft_core.engine._write_reports", full_disk)
    cfg.overwrite, cfg.seed = True, 7
    with pytest.raises(LftError, match="the disk is full while saving"):
        run(cfg)
    after = {name: hashlib.sha256((out / name).read_bytes()).hexdigest() for name in before if (out / name).exists()}
    # the adapter itself is untouched; only the old report (our marker file) may be gone
    assert {k: v for k, v in before.items() if k != "report.json"} == {k: v for k, v in after.items() if k != "report.json"}
    assert not (out / ".staging").exists()


def test_non_finite_loss_names_the_step(tiny_models, keyword_csv, tmp_path):
    cfg = RunConfig(model=tiny_models["bert"], dataset=keyword_csv, method="full", epochs=2, max_length=32,
                    learning_rate=1e12, output=str(tmp_path / "nan"), warmup_ratio=0.0)
    events = []
    with pytest.raises(LftError, match=r"(loss became|gradient became) .*step \d+.*learning rate"):
        run(cfg, emit=events.append)
    assert json.loads((tmp_path / "nan" / "status.json").read_text())["status"] == "failed"
    logged = [json.loads(line)["event"] for line in (tmp_path / "nan" / "events.jsonl").read_text().splitlines()]
    assert [e.kind for e in events].count("failed") == logged.count("failed") == 1 and logged[-1] == "failed"


@pytest.mark.slow
def test_two_process_ddp_counts_each_example_once(tiny_models, keyword_csv, tmp_path):
    from lft_core import evaluate, load_adapter, load_base_model, load_data

    out = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
                "-m", "lft_core"]
    proc = subprocess.run(torchrun + _flags(tiny_models["bert"], keyword_csv, out),
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads((out / "report.json").read_text())
    cfg = RunConfig(**json.loads((out / "run_config.json").read_text()))
    data = load_data(cfg)
    names = data["train"].features["label"].names
    # the base was scored in 2 shards under DDP; one process must get the same numbers
    base = load_base_model(cfg.model, names, seed=cfg.seed, base_dropout=cfg.base_dropout)
    single_base, _ = evaluate(base.model, base.tokenizer, data["test"], cfg.max_length)
    assert report["base_metrics"]["n"] == single_base.n == len(data["test"])
    assert report["base_metrics"]["confusion"] == single_base.confusion
    model, tokenizer = load_adapter(out)
    single_tuned, _ = evaluate(model, tokenizer, data["test"], cfg.max_length)
    assert report["finetuned_metrics"]["confusion"] == single_tuned.confusion
    assert sorted(p.name for p in out.iterdir()).count("adapter_config.json") == 1


def test_disk_full_during_a_checkpoint_is_one_line_and_leaves_no_half_checkpoint(tiny_models, keyword_csv, tmp_path,
                                                                                 monkeypatch):
    from transformers import Trainer

    def full_disk(self, model, trial=None):
        folder = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.safetensors").write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Trainer, "_save_checkpoint", full_disk)
    out = tmp_path / "run"
    cfg = RunConfig(model=tiny_models["bert"], dataset=keyword_csv, epochs=2, max_length=32, batch_size=4,
                    save_steps=5, output=str(out))
    with pytest.raises(LftError, match="the disk is full while writing a checkpoint.*no checkpoint had been saved yet"):
        run(cfg)
    assert json.loads((out / "status.json").read_text())["status"] == "failed"
    assert not list((out / "checkpoints").glob("checkpoint-*")) and not list(out.rglob("*.tmp"))


def test_stop_ends_within_a_step_without_validating_and_keeps_a_checkpoint(tiny_models, keyword_csv, tmp_path):
    import threading

    from lft_core import StopRequested, events

    stop, seen = threading.Event(), []

    def emit(event):
        seen.append(event)
        if isinstance(event, events.Progress) and event.phase == "train" and event.step == 3:
            stop.set()

    out = tmp_path / "run"
    with pytest.raises(StopRequested):
        run(RunConfig(model=tiny_models["bert"], dataset=keyword_csv, epochs=3, max_length=32, batch_size=4,
                      output=str(out)), emit=emit, stop=stop)
    kinds = [type(e).__name__ for e in seen]
    assert kinds[-1] == "Stopped" and "EpochEnd" not in kinds  # stopped in epoch 1: no validation pass
    assert seen[-1].resumable and json.loads((out / "status.json").read_text())["status"] == "stopped"
    steps = [int(p.name.split("-")[1]) for p in (out / "checkpoints").glob("checkpoint-*")]
    assert steps == [4] and "at step 4 of" in seen[-1].message  # asked during step 3's log: ends after step 4


def test_sigterm_stop_then_resume_matches_an_uninterrupted_run(tiny_models, keyword_csv, tmp_path):
    reference = _cli(_flags(tiny_models["bert"], keyword_csv, tmp_path / "reference"))
    assert reference.wait(timeout=600) == 0, reference.stderr.read()[-2000:]
    stopped_dir = tmp_path / "stopped"
    victim = _cli(_flags(tiny_models["bert"], keyword_csv, stopped_dir))
    deadline = time.time() + 300
    while time.time() < deadline:
        log = stopped_dir / "events.jsonl"
        if log.exists() and '"step": 30,' in log.read_text():  # mid epoch 2
            break
        time.sleep(0.05)
    victim.send_signal(signal.SIGTERM)
    out, err = victim.communicate(timeout=120)
    assert victim.returncode == 3, err[-2000:]
    assert json.loads((stopped_dir / "status.json").read_text())["status"] == "stopped"
    assert [r.resumable for r in list_runs(tmp_path) if r.name == "stopped"] == [True]
    resumed = _cli(["run", "--resume", str(stopped_dir)])
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-3000:]
    wa = load_file(tmp_path / "reference" / "adapter_model.safetensors")
    wb = load_file(stopped_dir / "adapter_model.safetensors")
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], atol=1e-5, rtol=1e-4)
