"""Tab 4, compare: metrics of the base model and saved adapters, live side-by-side predictions, and the test
rows whose prediction changed."""

from __future__ import annotations

import time

import gradio as gr

from lft_core import LftError, list_runs
from lft_core.runs import resolve_run
from lft_core.compare import changed_rows, comparison_figures, example_texts, live_predict, read_report, summary_table
from ui.state import as_gradio_error


def _complete_runs() -> list[tuple[str, str]]:
    return [(run["name"], run["path"]) for run in list_runs() if run["status"] == "complete"]  # sweeps' runs too


def create_compare_tab(train: dict) -> dict:
    runs = _complete_runs()
    with gr.Row():
        selected = gr.Dropdown(runs, value=[runs[0][1]] if runs else [], multiselect=True, scale=4,
                               allow_custom_value=True, label="Saved adapters (saved_adapters/)")
        refresh = gr.Button("Refresh list", scale=1)
    compare = gr.Button("Compare", variant="primary")
    table = gr.Dataframe(label="Runs", max_height=260)
    with gr.Row():
        bars = gr.Plot(label="Test metrics")
        per_class = gr.Plot(label="F1 per class")
    with gr.Row():
        confusion = gr.Plot(label="Confusion matrices")
        pareto = gr.Plot(label="Accuracy vs trainable parameters")

    gr.Markdown("### Live predictions: base vs fine-tuned")
    with gr.Row():
        text = gr.Textbox(label="Text", lines=3, scale=4, placeholder="Type or paste a text")
        examples = gr.Dropdown([], label="Examples from the test split", scale=2)
    predict = gr.Button("Predict")
    with gr.Row():
        base_label = gr.Label(label="Base model", num_top_classes=5)
        tuned_label = gr.Label(label="Fine-tuned (PEFT)", num_top_classes=5)
    latency = gr.Markdown()

    gr.Markdown("### What changed on the test split")
    with gr.Row():
        only_class = gr.Dropdown(["(all)"], value="(all)", label="True class")
        still_wrong = gr.Checkbox(label="Rows the fine-tuned model still gets wrong")
    changes = gr.Dataframe(label="Changed predictions (click a header to sort)", wrap=True, max_height=400)

    refresh.click(lambda: gr.update(choices=_complete_runs()), outputs=[selected], api_name="refresh_runs")
    comparison = [table, bars, per_class, confusion, pareto, examples, only_class, changes]
    compare.click(on_compare, inputs=[selected], outputs=comparison, api_name="compare")
    train["finished_run"].change(on_finished, inputs=[train["finished_run"]], outputs=[selected])
    examples.change(lambda t: t or gr.update(), inputs=[examples], outputs=[text])
    predict.click(on_predict, inputs=[selected, text], outputs=[base_label, tuned_label, latency],
                  concurrency_limit=4, concurrency_id="predict", api_name="predict")
    text.submit(on_predict, inputs=[selected, text], outputs=[base_label, tuned_label, latency],
                concurrency_limit=4, concurrency_id="predict", api_name=False)
    for control in (only_class, still_wrong):
        control.change(on_changes, inputs=[selected, only_class, still_wrong], outputs=[changes])
    return {"selected": selected, "compare": compare, "refresh": lambda: gr.update(choices=_complete_runs())}


def _checked(selected) -> list[str]:
    """The selected runs, each confirmed to be a finished run inside saved_adapters/."""
    if not selected:
        raise LftError("pick a saved adapter first (train one in the Fine-tune tab)")
    selected = selected if isinstance(selected, list) else [selected]
    return [str(resolve_run(s)) for s in selected]


def _last(selected) -> str:
    return _checked(selected)[-1]


def on_finished(run_dir):
    if not run_dir:
        return gr.update()
    return gr.update(choices=_complete_runs(), value=[run_dir])


def on_compare(selected):
    try:
        selected = _checked(selected)
        last = selected[-1]
        bars, per_class, confusion, pareto = comparison_figures(selected)
        names = read_report(last)["data"]["label_names"]
        return (summary_table(selected), bars, per_class, confusion, pareto,
                gr.update(choices=example_texts(last), value=None),
                gr.update(choices=["(all)"] + names, value="(all)"), changed_rows(last))
    except LftError as exc:
        raise as_gradio_error(exc) from None


def on_predict(selected, text):
    try:
        start = time.perf_counter()
        base, tuned = live_predict(_last(selected), text)
        return base, tuned, f"{(time.perf_counter() - start) * 1000:.0f} ms for both models"
    except LftError as exc:
        raise as_gradio_error(exc) from None


def on_changes(selected, only_class, still_wrong):
    try:
        return changed_rows(_last(selected), None if only_class in (None, "(all)") else only_class, still_wrong)
    except LftError as exc:
        raise as_gradio_error(exc) from None
