"""Run folders: names that never collide, paths resolved one way, every status listed, a finished run taken home
(zip, Hub) and loaded anywhere."""

import json
import os
import threading
import zipfile
from pathlib import Path

import pytest

from lft_core import LftError, RunConfig, list_runs, run
from lft_core import export, runs


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_models, keyword_csv):
    root = tmp_path_factory.mktemp("runs")
    result = run(RunConfig(model=tiny_models["bert"], dataset=keyword_csv, epochs=1, max_length=32,
                           output=str(root / "tiny")))
    return root, result


def test_default_names_never_collide(tmp_path):
    """Two runs started in the same second get two folders, reserved atomically."""
    found, barrier = [], threading.Barrier(8)

    def one():
        barrier.wait()
        found.append(runs.reserve(None, "same-name", overwrite=False, root=tmp_path))

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len({p.name for p in found}) == 8
    assert sorted(p.name for p in found)[:2] == ["same-name", "same-name-2"]


def test_runs_are_found_by_name_absolute_or_working_directory_path(finished, monkeypatch):
    root, result = finished
    assert runs.resolve_run("tiny", root) == result.run_dir
    assert runs.resolve_run(str(result.run_dir), root) == result.run_dir
    monkeypatch.chdir(root.parent)
    assert runs.resolve_run(f"{root.name}/tiny", root) == result.run_dir  # what a relative listing would give
    listed = list_runs(root)
    assert [r.name for r in listed] == ["tiny"] and Path(listed[0].path).is_absolute()
    assert runs.resolve_run(listed[0].name, root) == runs.resolve_run(listed[0].path, root)


@pytest.mark.parametrize("bad", ["../../etc", "/etc", "../x"])
def test_runs_outside_the_folder_are_refused(finished, bad):
    with pytest.raises(LftError, match="not a folder directly inside"):
        runs.resolve_run(bad, finished[0])


def test_list_shows_every_status(tmp_path):
    for name, status in [("done", "complete"), ("halted", "stopped"), ("broke", "failed"), ("waiting", "queued")]:
        (tmp_path / name).mkdir()
        runs.write_json(tmp_path / name / "status.json", {"status": status, "updated": 1.0, "message": name})
    (tmp_path / "died").mkdir()
    runs.write_json(tmp_path / "died" / "status.json", {"status": "running", "pid": 2**22 + 7, "updated": 1.0})
    (tmp_path / "halted" / runs.STATE / "checkpoint-5").mkdir(parents=True)
    (tmp_path / "halted" / runs.STATE / "checkpoint-5" / "trainer_state.json").write_text("{}")
    states = {r.name: (r.status, r.resumable) for r in list_runs(tmp_path)}
    assert states == {"done": ("incomplete", False), "halted": ("stopped", True), "broke": ("failed", False),
                      "waiting": ("queued", False), "died": ("interrupted", False)}


def test_delete_refuses_a_live_run_and_removes_a_finished_one(tmp_path):
    (tmp_path / "live").mkdir()
    runs.write_json(tmp_path / "live" / "status.json", {"status": "running", "pid": os.getpid()})
    with pytest.raises(LftError, match="still training"):
        runs.delete_run("live", tmp_path)
    (tmp_path / "old").mkdir()
    runs.write_json(tmp_path / "old" / "status.json", {"status": "failed"})
    runs.delete_run("old", tmp_path)
    assert not (tmp_path / "old").exists()


def test_zip_holds_what_a_user_takes_home(finished):
    root, result = finished
    path = runs.export_zip("tiny", root)
    with zipfile.ZipFile(path) as archive:
        names = {Path(n).name for n in archive.namelist()}
    assert {"adapter_model.safetensors", "adapter_config.json", "base_model.json", "tokenizer.json", "README.md",
            "report.html", "test_predictions.csv"} <= names
    assert not any("checkpoint" in n for n in names)


@pytest.mark.parametrize("status", ["stopped", "running", "failed"])
def test_only_finished_runs_leave_the_server(tmp_path, status):
    (tmp_path / "halfway").mkdir()
    runs.write_json(tmp_path / "halfway" / "status.json", {"status": status})
    with pytest.raises(LftError, match="halfway is not a finished run"):
        runs.export_zip("halfway", tmp_path)
    with pytest.raises(LftError, match="halfway is not a finished run"):
        export.push_to_hub("halfway", "someone/x", "hf_token", root=tmp_path)


def test_push_offline_is_one_line_within_seconds(finished, monkeypatch):
    import time

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.time()
    with pytest.raises(LftError, match="unreachable"):
        export.push_to_hub("tiny", "someone/tiny", "hf_token", root=finished[0])
    assert time.time() - start < 5
    with pytest.raises(LftError, match="must look like"):
        export.push_to_hub("tiny", "no-slash", "hf_token", root=finished[0])


def test_damaged_adapter_weights_are_one_line(finished, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(finished[1].run_dir, copy)
    weights = copy / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(LftError, match="is damaged"):
        runs.load_adapter(copy)
    weights.write_text("not safetensors at all")
    with pytest.raises(LftError, match="is damaged"):
        runs.load_adapter(copy)


def test_base_reference_names_the_real_base(finished, tiny_models):
    folder = finished[1].run_dir
    ref = json.loads((folder / "base_model.json").read_text())
    adapter = json.loads((folder / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == ref["base_model_name_or_path"] == str(Path(tiny_models["bert"]).resolve())
    assert ref["num_labels"] == 3 and ref["id2label"] == {"0": "food", "1": "sport", "2": "tech"}
    assert ".cache" not in adapter["base_model_name_or_path"]


def test_missing_base_folder_is_named(finished, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(finished[1].run_dir, copy)
    for name in ("adapter_config.json", "base_model.json"):
        values = json.loads((copy / name).read_text())
        values["base_model_name_or_path"] = str(tmp_path / "gone")
        (copy / name).write_text(json.dumps(values))
    with pytest.raises(LftError, match="no longer exists"):
        runs.load_adapter(copy)
