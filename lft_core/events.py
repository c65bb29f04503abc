"""Events: what a run reports while it works. One dataclass per kind, one JSON-lines log per run
(runs.RunFolder.events), one reader (`tail`) and one way to put an event into words (`describe`), shared by the CLI,
the app and the notebook."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar

from lft_core.records import Record


@dataclass
class Event:
    kind: ClassVar[str] = "event"
    time: float = field(default_factory=time.time, kw_only=True)

    def to_dict(self) -> dict:
        return {"event": self.kind, **dataclasses.asdict(self)}


@dataclass
class Stage(Event):
    """A named step of the run begins (data, model, baseline, train, save, evaluate, report)."""
    kind: ClassVar[str] = "stage"
    stage: str
    message: str


@dataclass
class DataLoaded(Event):
    kind: ClassVar[str] = "data"
    train: int
    validation: int
    test: int
    label_names: list[str]


@dataclass
class Started(Event):
    """The run folder exists: from here on every event is also in its log (runs.RunFolder.events)."""
    kind: ClassVar[str] = "started"
    run_dir: str
    run_name: str
    config: dict


@dataclass
class Scored(Event):
    """A model scored on the test split ('base', 'finetuned', or a reference such as 'tfidf')."""
    kind: ClassVar[str] = "metrics"
    which: str
    scores: dict[str, float]
    n: int
    seconds: float


@dataclass
class Parameters(Event):
    kind: ClassVar[str] = "parameters"
    trainable: int
    total: int


@dataclass
class Progress(Event):
    """Work done in a long phase. eta_s covers the rest of the run: training, validation, saving and the final
    evaluation."""
    kind: ClassVar[str] = "progress"
    phase: str
    step: int
    total: int
    elapsed_s: float
    eta_s: float | None = None
    loss: float | None = None
    epoch: float | None = None
    learning_rate: float | None = None
    tokens_per_s: float | None = None
    run_share: float | None = None


@dataclass
class Estimated(Event):
    """How long the run should take on this machine, phase by phase, from a few timed calls (lft_core.estimate)."""
    kind: ClassVar[str] = "estimate"
    seconds: float
    phases: dict[str, float]
    threads: int
    calibration_s: float


@dataclass(frozen=True)
class EpochRecord(Record):
    """One epoch's validation: the one shape of it that training keeps, the report saves, the event carries and the
    charts draw."""
    epoch: int = 0
    step: int = 0
    """the optimizer step the epoch ended at"""
    scores: dict[str, float] = field(default_factory=dict)
    """validation scores by METRICS key; a key a record lacks was not measured then"""

    @classmethod
    def _read(cls, values: dict) -> dict:
        return {**values, "scores": dict(values.get("scores") or {})}

    @classmethod
    def from_dict(cls, values: dict | None) -> "EpochRecord":
        values = dict(values or {})
        if "scores" not in values and "accuracy" in values:  # records written before scores were grouped
            values["scores"] = {"accuracy": values["accuracy"]}
        return super().from_dict(values)

    @property
    def accuracy(self) -> float | None:
        return self.scores.get("accuracy")

    def to_dict(self) -> dict:
        # the flat accuracy beside the scores: saved epoch records (the report's, best.json) have always had it
        flat = {"accuracy": self.accuracy} if self.accuracy is not None else {}
        return {**super().to_dict(), **flat}


@dataclass
class EpochEnd(Event):
    kind: ClassVar[str] = "epoch"
    epoch: int
    step: int
    scores: dict[str, float]
    best_epoch: int

    @classmethod
    def of(cls, record: EpochRecord, best_epoch: int) -> "EpochEnd":
        return cls(epoch=record.epoch, step=record.step, scores=dict(record.scores), best_epoch=best_epoch)

    @property
    def record(self) -> EpochRecord:
        return EpochRecord(epoch=self.epoch, step=self.step, scores=dict(self.scores))


@dataclass
class Warn(Event):
    kind: ClassVar[str] = "warning"
    message: str


@dataclass
class Finished(Event):
    kind: ClassVar[str] = "finished"
    run_dir: str
    run_name: str
    verdict: str
    base: dict[str, float]
    finetuned: dict[str, float]


@dataclass
class Failed(Event):
    kind: ClassVar[str] = "failed"
    message: str


@dataclass
class Stopped(Event):
    kind: ClassVar[str] = "stopped"
    message: str
    resumable: bool = False


@dataclass
class Resumed(Event):
    """A stopped run was queued again: what follows in its log is the new attempt, from the checkpoint's step."""
    kind: ClassVar[str] = "resumed"
    from_step: int | None
    message: str = ""


KINDS = {cls.kind: cls for cls in (Stage, DataLoaded, Started, Scored, Parameters, Progress, Estimated, EpochEnd,
                                    Warn, Finished, Failed, Stopped, Resumed)}
TERMINAL = (Finished, Failed, Stopped)
Emit = Callable[[Event], None]


def from_dict(values: dict) -> Event | None:
    """The event a JSON line holds; None for a kind this version does not know."""
    cls = KINDS.get(values.get("event"))
    if cls is None:
        return None
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})


class EventLog:
    """Appends events to a JSON-lines file. Until `attach` names the file (the run folder is made only once the
    inputs are known to be good), events wait in memory; attaching writes them first, in order."""

    def __init__(self, path: Path | None = None):
        self.path, self.pending = None, []
        if path is not None:
            self.attach(path)

    def attach(self, path: Path) -> None:
        self.path = Path(path)
        pending, self.pending = self.pending, []
        self._write(pending)

    def __call__(self, event: Event) -> None:
        if self.path is None:
            self.pending.append(event)
        else:
            self._write([event])

    def _write(self, events: list[Event]) -> None:
        if events:
            with self.path.open("a") as f:
                f.writelines(json.dumps(e.to_dict(), default=str) + "\n" for e in events)


def tail(path: Path, offset: int = 0) -> tuple[list[Event], int]:
    """Events written after byte `offset`, and the new offset; a half-written last line waits for the next call."""
    path = Path(path)
    if not path.exists():
        return [], offset
    with path.open("rb") as f:
        f.seek(offset)
        chunk = f.read()
    end = chunk.rfind(b"\n") + 1
    found = []
    for line in chunk[:end].decode("utf-8", errors="replace").splitlines():
        try:
            event = from_dict(json.loads(line))
        except ValueError:
            continue
        if event is not None:
            found.append(event)
    return found, offset + end


def read_all(path: Path) -> list[Event]:
    return tail(path, 0)[0]


def duration(seconds: float | None) -> str:
    """'42 s', '3 min 05 s', '1 h 02 min'."""
    if seconds is None:
        return "?"
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def describe_progress(event: Progress) -> str:
    share = f"{100 * event.step / event.total:.0f}%" if event.total else "?"
    parts = [f"{event.phase} {event.step}/{event.total} ({share})"]
    if event.loss is not None:
        parts.append(f"loss {event.loss:.4f}")
    if event.tokens_per_s:
        parts.append(f"{event.tokens_per_s:,.0f} tokens/s")
    parts.append(f"elapsed {duration(event.elapsed_s)}")
    if event.eta_s is not None:
        parts.append(f"about {duration(event.eta_s)} left")
    return ", ".join(parts)


def _scores(scores: dict[str, float]) -> str:
    from lft_core.evaluate import METRICS

    return ", ".join(f"{m.label} {scores[m.key]:.4f}" for m in METRICS if m.key in scores)


def describe(event: Event) -> str:
    """One line of plain words for an event, as the CLI prints it and the app's log shows it."""
    if isinstance(event, Stage):
        return f"[{event.stage}] {event.message}"
    if isinstance(event, DataLoaded):
        return (f"  splits: train {event.train:,}, validation {event.validation:,}, test {event.test:,}; "
                f"classes: {', '.join(event.label_names)}")
    if isinstance(event, Started):
        return f"  run folder: {event.run_dir}"
    if isinstance(event, Scored):
        return f"  {event.which}: {_scores(event.scores)} ({event.n:,} test texts, {event.seconds:.1f} s)"
    if isinstance(event, Parameters):
        return f"  trainable parameters: {event.trainable:,} of {event.total:,} ({100 * event.trainable / event.total:.3f}%)"
    if isinstance(event, Progress):
        return "  " + describe_progress(event)
    if isinstance(event, Estimated):
        parts = ", ".join(f"{name} {duration(s)}" for name, s in event.phases.items() if s >= 0.5)
        return (f"  estimated here: about {duration(event.seconds)} in all ({parts}); {event.threads} thread(s) "
                f"were faster now")
    if isinstance(event, EpochEnd):
        return f"  epoch {event.epoch}: validation {_scores(event.scores)} (best epoch so far: {event.best_epoch})"
    if isinstance(event, Warn):
        return f"warning: {event.message}"
    if isinstance(event, Finished):
        return event.verdict
    if isinstance(event, Failed):
        return f"error: {event.message}"
    if isinstance(event, Stopped):
        return f"stopped: {event.message}"
    if isinstance(event, Resumed):
        return f"resumed: {event.message}"
    return str(event.to_dict())
