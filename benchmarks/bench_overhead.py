"""Fixed costs a user waits through, measured as they are met, in one invocation:

    .venv/bin/python benchmarks/bench_overhead.py | tee benchmarks/results/bench_overhead.txt
    .venv/bin/python benchmarks/bench_overhead.py --busy     # the same beside one CPU-bound process

1. CLI: from `python -m lft_core run` (bbc-news, the defaults) to its first training step, with no cached baseline
   and with one, and where the time goes (from the events' timestamps).
2. App (started as the README starts it, on a temporary runs folder): a Baseline click on the defaults until its
   result shows; a Train click until the first loss point arrives (the baseline cached by that click); Stop, until
   the run's status.json says 'stopped'.

Each run is stopped once it has trained a little; nothing here times a whole training run (bench_train does)."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


def _busy() -> None:
    while True:
        pass


def _events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _wait(condition, timeout: float, every: float = 0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError


def cli_to_first_step(root: Path, label: str) -> dict:
    """Launch the default run, wait for its first training step, stop it; the stages from its event log."""
    out = root / f"cli-{label}"
    env = {**os.environ, "LFT_ADAPTERS_DIR": str(root)}
    start = time.time()
    proc = subprocess.Popen([PY, "-m", "lft_core", "run", "--output", str(out)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = out / "events.jsonl"
    first = _wait(lambda: next((e for e in _events(log) if e["event"] == "progress" and e["phase"] == "train"), None), 600)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    marks = {}
    for event in _events(log):
        if event["event"] == "stage":
            marks.setdefault(event["stage"], event["time"])
    stages = {f"{name} starts": round(at - start, 2) for name, at in marks.items()}
    return {"first_step_s": round(first["time"] - start, 2), **stages}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_timings(root: Path) -> dict:
    from gradio_client import Client

    port = _free_port()
    env = {**os.environ, "LFT_ADAPTERS_DIR": str(root), "GRADIO_SERVER_PORT": str(port),
           "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_ANALYTICS_ENABLED": "False"}
    start = time.time()
    app = subprocess.Popen([PY, "app.py"], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"

    def up():
        try:
            return urllib.request.urlopen(url, timeout=2).status == 200
        except OSError:
            return False

    try:
        _wait(up, 180, 0.2)
        result = {"app_first_page_s": round(time.time() - start, 2)}
        client = Client(url, verbose=False)
        time.sleep(10)  # let the warm worker the app keeps finish its imports, as it has long before a user clicks
        parameters = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
        defaults = {api: [p["parameter_default"] for p in parameters[api]["parameters"]] for api in ("/baseline", "/train")}
        t = time.time()
        client.predict(*defaults["/baseline"], api_name="/baseline")
        result["baseline_click_to_result_s"] = round(time.time() - t, 2)
        t = time.time()
        job = client.submit(*defaults["/train"], api_name="/train")
        _wait(lambda: any("training: step" in (o[1] or "") for o in job.outputs()), 300)
        result["train_click_to_first_loss_s"] = round(time.time() - t, 2)
        run_dir = next(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        t = time.time()
        client.predict(api_name="/stop")
        _wait(lambda: json.loads((run_dir / "status.json").read_text())["status"] == "stopped", 120)
        result["stop_click_to_stopped_s"] = round(time.time() - t, 2)
        return result
    finally:
        app.terminate()
        app.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", action="store_true", help="run everything beside one CPU-bound process")
    args = parser.parse_args()
    print(f"# bench_overhead {time.strftime('%Y-%m-%d %H:%M')} cpus {os.cpu_count()} busy={args.busy}")
    hog = multiprocessing.Process(target=_busy, daemon=True) if args.busy else None
    if hog:
        hog.start()
    root = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    try:
        cold = cli_to_first_step(root, "cold")
        warm = cli_to_first_step(root, "cached-baseline")
        print("CLI, python -m lft_core run (bbc-news defaults), seconds from the command:")
        for key in cold:
            print(f"  {key:28s} no cached baseline {cold[key]:6.2f}   cached baseline {warm.get(key, float('nan')):6.2f}")
        shutil.rmtree(root)
        root.mkdir()
        app = app_timings(root)
        print("App (python app.py), seconds:")
        for key, value in app.items():
            print(f"  {key:36s} {value:6.2f}")
    finally:
        if hog:
            hog.terminate()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
