"""Lightweight fine-tuning studio: a Gradio app over lft_core. This file only lays out the tabs; each tab's
module wires its events to lft_core calls, and training runs in a worker process (ui/jobs.py)."""

from __future__ import annotations

import logging
import warnings

from functools import partial

import gradio as gr

import lft_core
from ui.baseline_tab import create_baseline_tab
from ui.compare_tab import create_compare_tab
from ui.data_tab import create_data_tab
from ui.forms import remember
from ui.jobs import JobManager
from ui.train_tab import create_train_tab

INTRO = """## Lightweight fine-tuning studio
Score a pretrained model on your labelled texts, fine-tune it with a PEFT method, and compare the reloaded adapter
with the base on the same test split. The defaults (MiniLM on BBC News) work offline. Runs are kept in `{where}`."""

CSS = """
.lft-progress {height: 10px; background: #e5e7eb; border-radius: 5px; overflow: hidden; margin-top: 2px}
.lft-progress-bar {height: 100%; background: #2f7ed8; transition: width 0.4s}
.lft-progress-text {font-size: 0.9em; color: #4b5563; margin-top: 4px}
footer {display: none !important}
/* On a phone the runs table keeps readable columns and scrolls sideways, instead of one letter per line: Gradio
   sets each column's width inline from the table's width, so a phone's widths are set here, alike for the header
   cells (th[data-heading]) and the body cells (div[data-col]). */
@media (max-width: 640px) {
  #runs-table table, #runs-table .virtual-body {width: max-content !important; min-width: 880px !important}
  #runs-table th, #runs-table td, #runs-table .body-cell {width: 80px !important; min-width: 80px !important;
                                                           max-width: 80px !important; flex: 0 0 80px !important}
  #runs-table [data-heading="0"], #runs-table [data-col="0"], #runs-table td:nth-child(1) {
    width: 180px !important; min-width: 180px !important; max-width: 180px !important; flex: 0 0 180px !important}
  #runs-table [data-heading="1"], #runs-table [data-col="1"], #runs-table td:nth-child(2) {
    width: 120px !important; min-width: 120px !important; max-width: 120px !important; flex: 0 0 120px !important}
  #runs-table [data-heading="2"], #runs-table [data-col="2"], #runs-table td:nth-child(3) {
    width: 180px !important; min-width: 180px !important; max-width: 180px !important; flex: 0 0 180px !important}
}
"""


def build_app(jobs: JobManager | None = None) -> gr.Blocks:
    jobs = jobs or JobManager()
    with gr.Blocks(title="Lightweight fine-tuning studio") as demo:
        # This browser's own: the token its jobs are filed under (a reload reattaches to them, another visitor
        # sees none of them here), and the form as it was last used (a reload mid-Baseline keeps the seed).
        secret = jobs.browser_secret()
        owner = gr.BrowserState(None, storage_key="lft-owner", secret=secret)
        saved_form = gr.BrowserState({}, storage_key="lft-form", secret=secret)
        gr.Markdown(INTRO.format(where=_where(jobs.root)))
        with gr.Tabs(elem_id="main-tabs", overflow_behavior="wrap") as tabs:  # on a phone tabs 3-4 hid behind "⋯"
            with gr.Tab("1. Model & data", id="data"):
                data = create_data_tab()
            with gr.Tab("2. Baseline", id="baseline"):
                baseline = create_baseline_tab(data)
            with gr.Tab("3. Fine-tune", id="train"):
                train = create_train_tab(data, jobs, owner)
            with gr.Tab("4. Compare", id="compare"):
                compare = create_compare_tab(train, jobs, tabs, owner)
        forms = data["form"].inputs | train["form"].inputs
        for button in (data["form"].check, baseline["run"], train["train"]):
            button.click(partial(remember, data["form"], train["form"]), inputs=forms, outputs=[saved_form],
                         concurrency_limit=None, api_name=False)
        demo.load(train["reattach"], inputs=[owner, saved_form], outputs=train["outputs"] + train["settings"] + [owner],
                  concurrency_limit=None, show_progress="hidden", api_name="reattach")
        demo.load(compare["refresh"], inputs=[owner], outputs=compare["refreshed"], api_name=False)  # runs saved since startup
    return demo


def _where(root) -> str:
    from pathlib import Path

    try:
        return str(Path(root).relative_to(Path.cwd())) + "/"
    except ValueError:
        return str(root)


def main() -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    # The heavy libraries, imported before the first request: transformers' lazy imports are not thread-safe (two
    # requests importing at once failed with "cannot import name 'AutoModel'"), and the first click is quicker.
    import lft_core.engine  # noqa: F401
    import peft  # noqa: F401

    limits = lft_core.host_limits()
    # GRADIO_SERVER_NAME / GRADIO_SERVER_PORT are read by launch() itself (Spaces sets them).
    build_app().queue(default_concurrency_limit=2).launch(max_file_size=f"{limits.max_upload_mb:.0f}mb",
                                                          show_error=True, css=CSS)


if __name__ == "__main__":
    main()
