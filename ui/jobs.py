"""Training jobs: one worker process at a time, running the same `python -m lft_core run` as the CLI, and a queue
kept on the server, so a job waits its turn even if the page that queued it is closed.

A job's run folder is reserved when it is queued (status 'queued'); the worker adopts it and writes its events
to the run's own events.jsonl, which is all the page reads. Closing the page therefore neither stalls nor stops
training, and opening it again replays the run. Stop sends SIGTERM: the worker ends within a step, keeps a
checkpoint to resume from, and says 'stopped'; if it has not exited after STOP_GRACE_S it is killed and the
folder is marked stopped all the same. Records survive an app restart.

Each job has an owner: the token of the browser that queued it (ui/train_tab.py keeps it in the browser's storage).
Stop and the live view take only the owner's jobs; other people's runs are listed, never stopped, from a page."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

import lft_core
from lft_core import RunConfig, events

REPO = Path(__file__).resolve().parents[1]
STOP_GRACE_S = 12.0
log = logging.getLogger("lft_core.app")


@dataclass
class Job:
    name: str
    run_dir: str
    config: dict
    resume: bool = False
    state: str = "queued"
    """queued, running or ended"""
    queued_at: float = field(default_factory=time.time)
    started: float | None = None
    pid: int | None = None
    log: str | None = None
    """the worker's own output (its last 'error:' line explains a worker that died without an event)"""
    owner: str | None = None
    """the browser (or API session) that queued it; None for a job recorded before owners were kept"""

    @property
    def events_path(self) -> Path:
        return lft_core.RunFolder(Path(self.run_dir)).events


class JobManager:
    def __init__(self, root: Path | None = None, pump_s: float = 0.5, warm: bool = True):
        self.root = Path(root or lft_core.adapters_root())
        self.jobs_dir = self.root / ".jobs"
        self.lock = threading.RLock()
        self.children: dict[int, subprocess.Popen] = {}
        self.warm, self.spare = warm, None
        self.closed = threading.Event()
        self.followed: dict[str, str] = {}
        """page (a Gradio session) -> the one job its live view follows; a stream whose job is no longer the
        page's ends, so two streams never write the same outputs"""
        if warm:  # one worker waits, imports done, so the next Train click starts training in seconds
            self.spare = self._spawn_worker()
        threading.Thread(target=self._pump, args=(pump_s,), daemon=True, name="job-queue").start()

    def browser_secret(self) -> str:
        """The key gr.BrowserState encrypts a page's owner token with, kept beside the job records: Gradio's default
        is new at each start, which would make every page a stranger to its own jobs after an app restart."""
        import secrets

        path = self.jobs_dir / "browser-secret"
        with self.lock:
            if not path.exists():
                self.jobs_dir.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                tmp.write_text(secrets.token_urlsafe(24))
                tmp.chmod(0o600)
                os.replace(tmp, path)
            return path.read_text().strip()

    # ---------------------------------------------------------------- records

    def _path(self, name: str) -> Path:
        return self.jobs_dir / f"{name}.json"

    def _save(self, job: Job) -> None:
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        tmp = self._path(job.name).with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(job)))
        os.replace(tmp, self._path(job.name))

    def jobs(self) -> list[Job]:
        """Every recorded job, oldest first."""
        found = []
        for record in self.jobs_dir.glob("*.json") if self.jobs_dir.is_dir() else []:
            try:
                found.append(Job(**json.loads(record.read_text())))
            except (OSError, ValueError, TypeError):
                continue
        return sorted(found, key=lambda j: j.queued_at)

    def get(self, name: str) -> Job | None:
        return next((j for j in self.jobs() if j.name == name), None)

    def alive(self, job: Job) -> bool:
        if job.state != "running" or not job.pid:
            return False
        child = self.children.get(job.pid)
        if child is not None:  # ours: poll() also reaps it, so a finished worker never lingers as a zombie
            return child.poll() is None
        try:
            os.kill(job.pid, 0)
        except OSError:
            return False
        return True

    def current(self) -> Job | None:
        """The running job, if any (also one started before an app restart)."""
        return next((j for j in self.jobs() if self.alive(j)), None)

    def queued(self) -> list[Job]:
        return [j for j in self.jobs() if j.state == "queued"]

    def latest(self, owner: str | None = None) -> Job | None:
        jobs = [j for j in self.jobs() if owner is None or j.owner == owner]
        return max(jobs, key=lambda j: j.started or j.queued_at) if jobs else None

    def active(self, owner: str | None) -> Job | None:
        """The owner's newest job that is queued or running: the one its page shows and its Stop acts on."""
        if not owner:
            return None
        mine = [j for j in self.jobs() if j.owner == owner and (j.state == "queued" or self.alive(j))]
        return max(mine, key=lambda j: j.queued_at) if mine else None

    def owner_of(self, run_dir: str | Path) -> str | None:
        """Who queued the newest job recorded for a run folder (None: no job of this app, e.g. a CLI run)."""
        found = [j for j in self.jobs() if Path(j.run_dir) == Path(run_dir)]
        return found[-1].owner if found else None

    def follow_here(self, page: str | None, name: str) -> None:
        if page:
            self.followed[page] = name

    def still_followed(self, page: str | None, name: str) -> bool:
        return not page or self.followed.get(page) == name

    # ---------------------------------------------------------------- the queue

    def submit(self, cfg: RunConfig | None = None, resume: str | None = None, owner: str | None = None) -> Job:
        """Queue a new run (its folder reserved now) or the resumption of a stopped one; starts it at once when
        nothing else is training. A resumption is marked in the run's log (a Resumed event), so a reader replaying
        the log knows the Stopped before it is not the end."""
        with self.lock:
            if resume:
                run_dir = lft_core.resolve_run(resume, self.root, finished=False)
                lft_core.check_resumable(run_dir)
                checkpoint = lft_core.last_checkpoint(run_dir)
                config = lft_core.read_run_config(run_dir)
                folder = lft_core.RunFolder(Path(run_dir))
                folder.set_status(lft_core.Status.QUEUED, pid=None)
                step = _checkpoint_step(checkpoint)
                folder.append(events.Resumed(
                    from_step=step, message=f"from checkpoint-{step}" if step is not None else "from the start"))
            else:
                name = lft_core.default_run_name(cfg.model, cfg.dataset, cfg.method)
                run_dir = lft_core.reserve(None, name, overwrite=False, status=lft_core.Status.QUEUED, root=self.root)
                config = {**cfg.to_dict(), "output": str(run_dir)}
            job = Job(Path(run_dir).name, str(run_dir), config, resume=bool(resume), owner=owner)
            self._save(job)
            self._start_next()
            return job

    def close(self) -> None:
        """Stop queueing and end the idle spare worker; a running job runs on."""
        self.closed.set()
        with self.lock:
            if self.spare is not None:
                self.spare.kill()
                self.spare.wait(timeout=10)
                self.spare = None

    def _pump(self, every_s: float) -> None:
        while not self.closed.wait(every_s):
            try:
                self._start_next()
            except Exception:  # the queue must outlive one bad record
                log.exception("job queue")

    def _start_next(self) -> None:
        with self.lock:
            for job in self.jobs():
                if job.state == "running" and not self.alive(job):
                    job.state = "ended"
                    self._save(job)
            running, waiting = self.current(), self.queued()
            if running is None and waiting:
                running = waiting.pop(0)
                self._launch(running)
            if running is None or waiting:
                self._keep_a_spare()

    def _keep_a_spare(self) -> None:
        """A spare worker's imports take seconds of a core, which on two cores slowed the start of the job beside it;
        so it is made while nothing trains, or for the next job when one is waiting in the queue."""
        if self.warm and not self.closed.is_set() and (self.spare is None or self.spare.poll() is not None):
            self.spare = self._spawn_worker()

    def _spawn_worker(self) -> subprocess.Popen:
        """`python -m lft_core worker`: it imports the heavy libraries at once, then waits for its job on stdin. In
        its own session, so an app restart leaves a running job running."""
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "LFT_ADAPTERS_DIR": str(self.root)}
        log = self.jobs_dir / f"worker-{time.time_ns()}.log"
        with open(log, "w") as out:
            child = subprocess.Popen([sys.executable, "-m", "lft_core", "worker"], cwd=REPO, stdin=subprocess.PIPE,
                                     stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True, text=True)
        child.log = str(log)
        self.children[child.pid] = child
        return child

    def _launch(self, job: Job) -> None:
        """Hand the job to the warm worker (or a fresh one): the same `run` command as the CLI."""
        config_path = self.jobs_dir / f"{job.name}.yaml"
        config_path.write_text(yaml.safe_dump(job.config))
        argv = ["run", "--resume", job.run_dir] if job.resume else ["run", "--config", str(config_path),
                                                                     "--output", job.run_dir]
        worker, self.spare = self.spare, None
        if worker is None or worker.poll() is not None:
            worker = self._spawn_worker()
        worker.stdin.write(json.dumps(argv) + "\n")
        worker.stdin.close()
        job.state, job.pid, job.started, job.log = "running", worker.pid, time.time(), worker.log
        self._save(job)

    # ---------------------------------------------------------------- stop

    def stop(self, job: Job, grace_s: float = STOP_GRACE_S, owner: str | None = None) -> str:
        """Stop a running job (or cancel a queued one). With `owner`, only that owner's job: the record is read
        again under the lock, so a job that started between the page's choice and this call is still its own.
        Returns what happened, in words."""
        with self.lock:
            job = self.get(job.name) or job
            if owner is not None and job.owner != owner:
                return f"`{job.name}` was started from another page; only that page can stop it."
            if job.state == "queued":
                return self._cancel(job)
        if not self.alive(job):
            return f"`{job.name}` is not running."
        os.kill(job.pid, signal.SIGTERM)
        deadline = time.time() + grace_s
        while self.alive(job) and time.time() < deadline:
            time.sleep(0.1)
        if self.alive(job):
            os.killpg(job.pid, signal.SIGKILL)
            while self.alive(job) and time.time() < deadline + 5:
                time.sleep(0.1)
        run_dir = Path(job.run_dir)
        if lft_core.read_status(run_dir).get("status") in (lft_core.Status.RUNNING, lft_core.Status.QUEUED):
            # killed before it could say so itself
            message = "stopped by the user (the worker did not end in time and was killed)"
            lft_core.end_unfinished(run_dir, lft_core.Status.STOPPED, message,
                                    events.Stopped(message=message, resumable=False))
        self._start_next()
        return f"Stopped `{job.name}`."

    def _cancel(self, job: Job) -> str:
        import shutil

        self._path(job.name).unlink(missing_ok=True)
        run_dir = Path(job.run_dir)
        if job.resume:
            lft_core.end_unfinished(run_dir, lft_core.Status.STOPPED, "resume cancelled while queued",
                                    events.Stopped(message="resume cancelled while queued", resumable=True))
        else:
            shutil.rmtree(run_dir, ignore_errors=True)  # reserved for this job, nothing in it yet
        return f"Removed `{job.name}` from the queue."


def _checkpoint_step(checkpoint: str | None) -> int | None:
    """The optimizer step a checkpoint folder was saved at (Trainer names them checkpoint-<step>)."""
    try:
        return int(Path(checkpoint).name.rsplit("-", 1)[1]) if checkpoint else None
    except (IndexError, ValueError):
        return None
