"""Training jobs: one worker process at a time, running the same `python -m lft_core run` as the CLI.

The worker appends its events to saved_adapters/.jobs/<run>.jsonl; the UI only reads that file. Closing the
page therefore neither stalls nor stops training, and opening it again replays the run from the file. Stop
sends SIGTERM, which ends training at the next step without saving a half-finished adapter."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from lft_core.compare import events
from lft_core.config import RunConfig
from lft_core.runs import adapters_root, default_run_name, safe_name

REPO = Path(__file__).resolve().parents[1]


class Busy(Exception):
    """Another training job is running."""


@dataclass
class Job:
    name: str
    run_dir: Path
    events_path: Path
    pid: int
    started: float

    def alive(self) -> bool:
        try:
            pid, _ = os.waitpid(self.pid, os.WNOHANG)  # reap our own child so it does not linger as a zombie
            if pid == self.pid:
                return False
        except ChildProcessError:
            pass
        try:
            os.kill(self.pid, 0)
        except OSError:
            return False
        return True

    def read(self, offset: int = 0) -> tuple[list[dict], int]:
        return events(self.events_path, offset)


class JobManager:
    def __init__(self, root: Path | None = None):
        self.root = Path(root or adapters_root())
        self.jobs_dir = self.root / ".jobs"
        self.lock = threading.Lock()

    def _record(self, name: str) -> Path:
        return self.jobs_dir / f"{name}.json"

    def _jobs(self) -> list[Job]:
        """Recorded jobs, newest first; records survive an app restart."""
        found = []
        records = self.jobs_dir.glob("*.json") if self.jobs_dir.is_dir() else []
        for record in sorted(records, key=lambda p: p.stat().st_mtime, reverse=True):
            try:
                data = json.loads(record.read_text())
                found.append(Job(data["name"], Path(data["run_dir"]), Path(data["events_path"]), data["pid"],
                                 data["started"]))
            except (OSError, ValueError, KeyError):
                continue
        return found

    def current(self) -> Job | None:
        """The running job, if any (also one started before an app restart)."""
        return next((job for job in self._jobs() if job.alive()), None)

    def latest(self) -> Job | None:
        """The most recent job, running or not, to replay its log after a page reload."""
        jobs = self._jobs()
        return jobs[0] if jobs else None

    def start(self, cfg: RunConfig, name: str | None = None, base_eval: Path | None = None) -> Job:
        """Launch the worker for cfg. Raises Busy while another job runs."""
        with self.lock:
            if self.current() is not None:
                raise Busy("another training job is running")
            name = safe_name(name) if name else default_run_name(cfg.model, cfg.dataset, cfg.method)
            run_dir = self.root / name
            self.jobs_dir.mkdir(parents=True, exist_ok=True)
            config_path = self.jobs_dir / f"{name}.yaml"
            events_path = self.jobs_dir / f"{name}.jsonl"
            values = {**cfg.to_dict(), "output": str(run_dir)}
            config_path.write_text(yaml.safe_dump(values))
            events_path.unlink(missing_ok=True)
            log = open(self.jobs_dir / f"{name}.log", "w")
            env = {**os.environ, "PYTHONUNBUFFERED": "1", "LFT_ADAPTERS_DIR": str(self.root)}
            command = [sys.executable, "-m", "lft_core", "run", "--config", str(config_path), "--events", str(events_path)]
            if base_eval is not None and Path(base_eval).exists():
                command += ["--base-eval", str(base_eval)]
            process = subprocess.Popen(
                command,
                cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            job = Job(name, run_dir, events_path, process.pid, time.time())
            record = {"name": name, "run_dir": str(run_dir), "events_path": str(events_path), "pid": process.pid,
                      "started": job.started}
            self._record(name).write_text(json.dumps(record))
            return job

    def stop(self, job: Job, grace_s: float = 20.0) -> None:
        """Ask the worker to stop at the next step; kill it if it has not stopped after grace_s."""
        if not job.alive():
            return
        os.kill(job.pid, signal.SIGTERM)
        deadline = time.time() + grace_s
        while job.alive() and time.time() < deadline:
            time.sleep(0.2)
        if job.alive():
            os.killpg(job.pid, signal.SIGKILL)
