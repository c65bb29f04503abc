"""The run folder: RunFolder alone knows its file names and writes its status and log; Status reads and writes the
strings that status.json has always held, so a folder saved before the enum reads the same."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from lft_core import events, runs
from lft_core.runs import RunFolder, Status

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "run-2dc49eb"
"""A run folder saved by main at 2dc49eb, before RunFolder and Status existed."""
GENERIC = {RunFolder.MODEL_CARD, RunFolder.MODEL_CONFIG, RunFolder.MODEL_WEIGHTS, RunFolder.TOKENIZER,
           RunFolder.TOKENIZER_CONFIG}
"""Names every Hugging Face model folder has (a base model's, an export's): other modules may name those."""


def _names() -> dict[str, str]:
    """RunFolder's file and folder names, by attribute."""
    return {k: v for k, v in vars(RunFolder).items() if k.isupper() and isinstance(v, str)}


@pytest.fixture
def old_run(tmp_path) -> Path:
    folder = tmp_path / "run-2dc49eb"
    shutil.copytree(FIXTURE, folder)
    return folder


# ---------------------------------------------------------------- Status and an old status.json


def test_an_old_status_json_reads_as_a_status(old_run):
    saved = json.loads((FIXTURE / "status.json").read_text())
    folder = RunFolder(old_run)
    assert folder.read_status() == runs.read_status(old_run) == saved
    assert folder.status is Status.COMPLETE and saved["status"] == Status.COMPLETE
    assert runs.is_complete(old_run) and runs.is_run_folder(old_run)
    assert [r.status for r in runs.list_runs(old_run.parent)] == ["complete"]


@pytest.mark.parametrize("status", list(Status))
def test_every_status_is_written_as_the_plain_string_and_read_back(old_run, status):
    before = json.loads((old_run / "status.json").read_text())
    runs.set_status(old_run, status, message="why")
    raw = json.loads((old_run / "status.json").read_text())
    assert raw["status"] == status.value and type(raw["status"]) is str
    assert raw["started"] == before["started"] and raw["message"] == "why"  # the other fields are kept
    assert RunFolder(old_run).status is status
    assert not list(old_run.glob("*.tmp"))


def test_the_status_of_no_folder_or_another_tools_is_none(tmp_path):
    assert RunFolder(tmp_path / "nothing").status is None and RunFolder(tmp_path).read_status() == {}
    (tmp_path / "status.json").write_text('{"status": "done"}')
    assert RunFolder(tmp_path).status is None and not runs.is_run_folder(tmp_path)
    with pytest.raises(ValueError):
        runs.set_status(tmp_path, "finished")  # not a status of ours: a typo fails here, not in a reader


def test_runfolder_names_every_file_an_old_run_folder_holds(old_run):
    folder = RunFolder(old_run)
    named = [folder.status_file, folder.events, folder.saved_config, folder.run_config, folder.base_ref,
             folder.report, folder.report_md, folder.report_html, folder.model_card, folder.predictions,
             folder.adapter_config, folder.tokenizer, *(old_run / n for n in runs.PEFT_FILES)]
    assert all(p.is_file() for p in named), [p.name for p in named if not p.is_file()]
    assert {p.name for p in old_run.iterdir()} <= {p.name for p in named} | {RunFolder.TOKENIZER_CONFIG}
    assert folder.run_config == folder.saved_config  # finished: no live config in a state folder


# ---------------------------------------------------------------- ending a run that did not finish


@pytest.mark.parametrize("status, event", [
    (Status.STOPPED, events.Stopped(message="stopped by the user", resumable=False)),
    (Status.FAILED, events.Failed(message="boom"))])
def test_ending_an_unfinished_run_writes_its_status_and_its_event(tmp_path, status, event):
    run_dir = runs.reserve(str(tmp_path / "run"), "run", overwrite=False)
    folder = RunFolder(run_dir)
    folder.staging.mkdir()
    folder.end_unfinished(status, event.message, event)
    saved = folder.read_status()
    assert saved["status"] == status and saved["message"] == event.message and saved["pid"] is None
    logged = events.read_all(folder.events)
    assert [type(e) for e in logged] == [type(event)] and logged[0].message == event.message
    assert not folder.staging.exists()


def test_a_failed_overwrite_of_a_finished_run_is_that_run_again_and_logs_the_failure(old_run):
    run_dir = runs.reserve(str(old_run), old_run.name, overwrite=True)
    assert RunFolder(run_dir).status is Status.RUNNING
    runs.end_unfinished(run_dir, Status.FAILED, "out of memory", events.Failed(message="out of memory"))
    saved = RunFolder(run_dir).read_status()
    assert saved["status"] == Status.COMPLETE and saved["last_attempt"]["status"] == Status.FAILED
    assert runs.is_complete(run_dir)
    assert [e.message for e in events.read_all(RunFolder(run_dir).events)] == ["out of memory"]


# ---------------------------------------------------------------- one module knows the names


def _pattern(name: str) -> re.Pattern:
    """A file name where it stands alone (not report.md inside sweep_report.md); a folder name as a string or a
    path part (not the word 'checkpoints' in prose)."""
    if "." in name.lstrip("."):
        return re.compile(rf"(?<![\w.-]){re.escape(name)}(?!\w)")
    return re.compile(rf"[\"'/]{re.escape(name)}[\"'/]")


def test_only_runs_py_names_the_run_folders_files():
    patterns = {name: _pattern(name) for name in _names().values() if name not in GENERIC}
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "lft_core").glob("*.py")):
        text = path.read_text()
        for name, pattern in patterns.items():
            if pattern.search(text):
                found.setdefault(name, set()).add(path.name)
    assert set(found) == set(patterns)  # each name is found (in runs.py): the patterns match what they look for
    assert {name: files for name, files in found.items() if files != {"runs.py"}} == {}
