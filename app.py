"""Lightweight fine-tuning studio: a Gradio app over lft_core. This file only lays out the tabs; each tab's
module wires its events to lft_core calls, and training runs in a worker process (ui/jobs.py)."""

from __future__ import annotations

import logging
import os
import warnings

import gradio as gr

from ui.baseline_tab import create_baseline_tab
from ui.compare_tab import create_compare_tab
from ui.data_tab import create_data_tab
from ui.jobs import JobManager
from ui.state import MAX_UPLOAD_MB
from ui.train_tab import create_train_tab

INTRO = """# Lightweight fine-tuning studio
Pick a model and a labelled dataset, score the base model, fine-tune it with a PEFT method, and compare the
reloaded adapter with the base on the same held-out test split. The defaults (MiniLM on BBC News) work offline."""


def build_app(jobs: JobManager | None = None) -> gr.Blocks:
    jobs = jobs or JobManager()
    with gr.Blocks(title="Lightweight fine-tuning studio") as demo:
        gr.Markdown(INTRO)
        with gr.Tab("1. Model & data"):
            data = create_data_tab()
        with gr.Tab("2. Baseline"):
            create_baseline_tab(data)
        with gr.Tab("3. Fine-tune"):
            train = create_train_tab(data, jobs)
        with gr.Tab("4. Compare"):
            compare = create_compare_tab(train)
        demo.load(train["reattach"], outputs=train["outputs"], concurrency_limit=None, api_name="reattach")
        demo.load(compare["refresh"], outputs=[compare["selected"]], api_name=False)  # runs saved since startup
    return demo


def main() -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    # GRADIO_SERVER_NAME / GRADIO_SERVER_PORT are read by launch() itself (Spaces sets them).
    build_app().queue(default_concurrency_limit=2).launch(max_file_size=f"{MAX_UPLOAD_MB:.0f}mb",
                                                          show_error=True)


if __name__ == "__main__":
    main()
