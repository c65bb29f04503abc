"""Runs: the saved_adapters/<run>/ layout. A run folder is written in place while it trains (status.json says
'running'), and its final files are moved in by rename, the adapter config and report last, so a killed run
never looks complete. `list_runs` is the app's memory across restarts."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

from lft_core.errors import LftError

ADAPTERS_ROOT = Path(os.environ.get("LFT_ADAPTERS_DIR", "saved_adapters"))
PEFT_FILES = ("adapter_config.json", "adapter_model.safetensors")
PLAIN_FILES = ("config.json", "model.safetensors")
# Moved into place in this order: whatever marks a run as loadable and finished comes last.
LAST_FILES = ("adapter_config.json", "config.json", "report.json")


def adapters_root() -> Path:
    return Path(os.environ.get("LFT_ADAPTERS_DIR", str(ADAPTERS_ROOT))).expanduser()


def safe_name(name: str) -> str:
    """A run name that stays inside saved_adapters/: no separators, no '..', no odd characters."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", str(name)).strip(".-")[:120]
    if not cleaned:
        raise LftError(f"run name {name!r} has no usable characters; use letters, digits, '.', '_' or '-'")
    return cleaned


def default_run_name(model: str, dataset: str, method: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return safe_name(f"{Path(model).name}-{Path(dataset).stem}-{method}-{stamp}")


def _status(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def write_json(path: Path, value) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, default=str))
    os.replace(tmp, path)


def append_events(path: Path, events) -> list[dict]:
    """Append events as JSON lines, each stamped with the time; returns them as written."""
    stamped = [{"time": time.time(), **event} for event in events]
    with Path(path).open("a") as f:
        f.writelines(json.dumps(event, default=str) + "\n" for event in stamped)
    return stamped


def set_status(run_dir: Path, status: str, **extra) -> None:
    write_json(run_dir / "status.json", {**_status(run_dir), "status": status, "updated": time.time(), **extra})


def prepare_run_dir(output: str | None, name: str, overwrite: bool, resume: bool = False) -> Path:
    """Create (or reuse, for resume/overwrite) the run folder. Refuses a non-empty folder without --overwrite;
    never deletes files it did not write."""
    run_dir = Path(output).expanduser() if output else adapters_root() / name
    if resume:
        if not (run_dir / "status.json").exists():
            raise LftError(f"{run_dir} is not an lft_core run folder (no status.json); pass the folder of a run to --resume")
        if _status(run_dir).get("status") == "complete":
            raise LftError(f"run {run_dir} already finished; nothing to resume")
        set_status(run_dir, "running", pid=os.getpid())
        return run_dir
    if run_dir.exists() and not run_dir.is_dir():
        raise LftError(f"--output {run_dir} is a file; give a folder path")
    if run_dir.is_dir() and any(run_dir.iterdir()) and not overwrite:
        raise LftError(f"output folder {run_dir} exists and is not empty; pass --overwrite or choose another --output")
    run_dir.mkdir(parents=True, exist_ok=True)
    if overwrite:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # ours: stale checkpoints would be resumed
        (run_dir / "events.jsonl").unlink(missing_ok=True)
    set_status(run_dir, "running", pid=os.getpid(), started=time.time())
    return run_dir


def staging_dir(run_dir: Path) -> Path:
    staging = run_dir / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    return staging


def finalize(run_dir: Path, staging: Path) -> None:
    """Move the staged outputs into the run folder, one atomic rename each, marker files last. An older
    run's report goes first, so a folder that is half new, half old never looks finished."""
    (run_dir / "report.json").unlink(missing_ok=True)
    files = sorted(staging.iterdir(), key=lambda p: (p.name in LAST_FILES, LAST_FILES.index(p.name) if p.name in LAST_FILES else 0))
    for path in files:
        target = run_dir / path.name
        if target.is_dir() and not path.is_dir():
            raise LftError(f"{target} is a folder; move it away so the run can write its {path.name}")
        os.replace(path, target)
    staging.rmdir()
    set_status(run_dir, "complete", finished=time.time())
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)


def is_complete(run_dir: Path) -> bool:
    run_dir = Path(run_dir)
    return (run_dir / "report.json").exists() and _status(run_dir).get("status") == "complete"


def list_runs(root: Path | None = None) -> list[dict]:
    """Every run folder with its status: complete runs first, newest first. A folder whose worker died
    while 'running' is reported as 'interrupted' (resumable), never as a good adapter."""
    root = Path(root or adapters_root())
    runs = []
    for run_dir in _run_folders(root):
        status = _status(run_dir)
        state = status.get("status", "unknown")
        if state == "running" and not _alive(status.get("pid")):
            state = "interrupted"
        if state == "complete" and not is_complete(run_dir):
            state = "incomplete"
        label = run_dir.name if run_dir.parent == root else f"{run_dir.parent.name}/{run_dir.name}"
        runs.append({"name": label, "path": str(run_dir), "status": state,
                     "updated": status.get("updated", run_dir.stat().st_mtime)})
    return sorted(runs, key=lambda r: (r["status"] != "complete", -r["updated"]))


def _run_folders(root: Path) -> list[Path]:
    """Run folders directly in root, and those of sweeps (root/sweep-*/<run>)."""
    found = []
    for child in sorted(root.iterdir()) if root.is_dir() else []:
        if not child.is_dir() or child.name.startswith("."):
            continue
        if child.name.startswith("sweep-") and not (child / "status.json").exists():
            found += [c for c in sorted(child.iterdir()) if c.is_dir() and (c / "status.json").exists()]
        elif (child / "status.json").exists():  # anything else in the folder is not a run
            found.append(child)
    return found


def _alive(pid) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError):
        return False
    return True


def read_report(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "report.json"
    if not path.exists():
        raise LftError(f"{run_dir} has no report.json: it is not a finished run")
    return json.loads(path.read_text())


def check_adapter_dir(adapter_dir: str | Path, allow_pickle: bool = False) -> str:
    """Return 'peft' or 'plain'; raise LftError naming the missing files of an incomplete folder."""
    path = Path(adapter_dir)
    if not path.is_dir():
        raise LftError(f"adapter folder {path} does not exist")
    if (path / "adapter_config.json").exists():
        kind, needed = "peft", PEFT_FILES
    elif (path / "config.json").exists():
        kind, needed = "plain", PLAIN_FILES
    else:
        raise LftError(f"{path} has no adapter_config.json or config.json: it is not a saved adapter or model")
    weights = needed[1]
    if not (path / weights).exists() and allow_pickle:
        weights = weights.replace(".safetensors", ".bin")
    missing = [f for f in (needed[0], weights, "tokenizer_config.json") if not (path / f).exists()]
    if missing:
        pickle = " (pickle .bin weights need --allow-pickle)" if any(path.glob("*.bin")) else ""
        raise LftError(f"adapter folder {path} is missing {', '.join(missing)}{pickle}; it is incomplete or not a finished run")
    return kind


def resolve_run(name_or_path: str, root: Path | None = None) -> Path:
    """A finished run inside saved_adapters/, by name or path. Anything that resolves outside the folder
    ('../', absolute paths elsewhere, links out) is refused."""
    root = Path(root or adapters_root()).resolve()
    candidate = Path(name_or_path)
    path = (candidate if candidate.is_absolute() else root / candidate).resolve()
    inside = path.parent == root or (path.parent.parent == root and path.parent.name.startswith("sweep-"))
    if not inside:
        raise LftError(f"run {name_or_path!r} is not a folder directly inside {root} (or one of its sweeps)")
    if not is_complete(path):
        raise LftError(f"run {path.name} is not a finished run (it was stopped, failed, or is still training)")
    return path
