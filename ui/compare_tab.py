"""Tab 4, compare: the verdict and metrics of saved adapters against the base, live side-by-side predictions, the
test rows whose prediction changed; every run with its status and the actions that fit it (compare, resume,
delete, report, zip, push to the Hub); and predictions for a whole file."""

from __future__ import annotations

import os
import time
from pathlib import Path

import gradio as gr
import pandas as pd

import lft_core
from lft_core import LftError
from ui.forms import error
from ui.jobs import JobManager



def _pair_box() -> gr.Textbox:
    """The second text of a sentence pair (premise/hypothesis, question/answer): runs trained on pairs read both
    boxes, the others only the first."""
    # value="": API callers that send one text (as before pairs existed) get an empty second one
    return gr.Textbox(value="", label="Second text (sentence-pair runs)", lines=1, max_lines=6, scale=3,
                      placeholder="Only for a run trained on pairs: the second text")


PAIR_EXAMPLE = "  ⟷  "
"""How an example pair is shown in the examples list (its value keeps both texts apart, as JSON)."""


def example_choices(run_dir: str) -> list:
    """The examples list: each text, or for a pair run (shown, JSON value) so one pick fills both boxes."""
    import json

    found = lft_core.example_texts(run_dir)
    if found and isinstance(found[0], tuple):
        return [(f"{a[:120]}{PAIR_EXAMPLE}{b[:120]}", json.dumps([a, b])) for a, b in found]
    return found


def on_example(value):
    """A picked example into the text boxes: a JSON pair fills both, a single text the first (and clears the second)."""
    import json

    if not value:
        return gr.update(), gr.update()
    if value.startswith('["'):
        try:
            first, second = json.loads(value)
            return first, second
        except ValueError:
            pass
    return value, ""


def _complete(root: Path) -> list[str]:
    return [r.name for r in lft_core.list_runs(root) if r.status == "complete"]  # sweeps' runs too


def create_compare_tab(train: dict, jobs: JobManager, tabs: gr.Tabs, owner: gr.BrowserState | None = None) -> dict:
    root = jobs.root
    complete = _complete(root)
    with gr.Row():
        # custom values: runs finished since the page was built are valid too (each is checked with resolve_run)
        selected = gr.Dropdown(complete, value=complete[:1], multiselect=True, scale=5, allow_custom_value=True,
                               label="Saved adapters to compare", info=f"finished runs in {_where(root)}")
        refresh = gr.Button("Refresh", scale=1, min_width=90)
        compare = gr.Button("Compare", variant="primary", scale=1, min_width=110)
    verdict = gr.Markdown(elem_id="compare-verdict")
    table = gr.Dataframe(label="Runs against the base (test split)", max_height=220, show_row_numbers=False, wrap=True,
                         column_widths=["21%", "6%", "7%", "7%", "7%", "7%", "10%", "7%", "6%", "8%", "6%", "8%"])
    with gr.Row():
        bars = gr.Plot(label="Test metrics", show_label=False)
        per_class = gr.Plot(label="F1 per class", show_label=False)
    with gr.Row():
        confusion = gr.Plot(label="Confusion matrices", show_label=False)
        pareto = gr.Plot(label="Accuracy vs trainable parameters", show_label=False)

    gr.Markdown("### Live predictions: base vs fine-tuned")
    with gr.Row():
        text = gr.Textbox(label="Text", lines=1, max_lines=6, scale=4, placeholder="Type or paste a text, then Enter")
        text_pair = _pair_box()
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
    changes = gr.Dataframe(label="Changed predictions (click a header to sort)", wrap=True, max_height=360,
                           show_row_numbers=False, column_widths=["11%", "11%", "11%", "9%", "58%"])

    with gr.Accordion("All runs: status and actions", open=True):
        runs_table = gr.Dataframe(_runs_frame(root, jobs), max_height=240, show_row_numbers=False, wrap=True,
                                  elem_id="runs-table", column_widths=RUNS_WIDTHS)
        with gr.Row():
            run = gr.Dropdown([r.name for r in lft_core.list_runs(root)], label="Run", scale=3, allow_custom_value=True)
            add = gr.Button("Compare", scale=1, min_width=90)
            resume = gr.Button("Resume", scale=1, min_width=90)
            delete = gr.Button("Delete", scale=1, min_width=90, variant="stop")
            confirm = gr.Button("Confirm delete", scale=1, min_width=110, variant="stop", visible=False)
        with gr.Row():
            report_button = gr.Button("Report (report.html)", scale=1)
            zip_button = gr.Button("Download as zip", scale=1)
            download = gr.File(label="Download", scale=2, height=70)
        action_note = gr.Markdown()
        create_export_and_deploy(root, run, action_note)

    with gr.Accordion("Predict a whole file", open=False):
        batch_run = gr.Dropdown(complete, value=complete[0] if complete else None, allow_custom_value=True,
                                label="Run to label with", info="a finished run; the file is labelled by this one")
        with gr.Row():
            batch_input = gr.File(label="Texts (csv / jsonl with a text column, or txt: one per line)",
                                  file_types=[".csv", ".tsv", ".jsonl", ".json", ".txt"], height=90)
            batch_output = gr.File(label="Predictions (csv with labels and probabilities)", height=90)
        batch = gr.Button("Predict the file")

    comparison = [verdict, table, bars, per_class, confusion, pareto, examples, only_class, changes]
    refreshed = [selected, runs_table, run, batch_run]
    who = [owner] if owner is not None else []

    def refresh_runs(current, token=None, request: gr.Request = None):
        return on_refresh(root, current, jobs, _owner(token, request))

    def resume_run(name, token=None, request: gr.Request = None):
        return on_resume(jobs, name, _owner(token, request))

    refresh.click(refresh_runs, inputs=[selected, *who], outputs=refreshed, api_name="refresh_runs")
    compare.click(lambda chosen: on_compare(root, chosen), inputs=[selected], outputs=comparison, api_name="compare")
    train["finished_run"].change(lambda done, current: on_finished(root, done, current),
                                 inputs=[train["finished_run"], selected], outputs=refreshed, api_name=False)
    predicting = dict(inputs=[selected, text, text_pair], outputs=[base_label, tuned_label, latency],
                      concurrency_limit=4, concurrency_id="predict")
    predict.click(lambda chosen, t, p="": on_predict(root, chosen, t, p), api_name="predict", **predicting)
    for box in (text, text_pair):
        box.submit(lambda chosen, t, p: on_predict(root, chosen, t, p), api_name=False, **predicting)
    examples.input(on_example, inputs=[examples], outputs=[text, text_pair], api_name=False).then(
        lambda chosen, t, p: on_predict(root, chosen, t, p), api_name=False, **predicting)
    for control in (only_class, still_wrong):
        control.change(lambda chosen, c, w: on_changes(root, chosen, c, w), inputs=[selected, only_class, still_wrong],
                       outputs=[changes], api_name=False)
    add.click(lambda name, current: on_add(root, name, current), inputs=[run, selected], outputs=[selected],
              api_name=False).then(lambda chosen: on_compare(root, chosen), inputs=[selected], outputs=comparison)
    resume.click(resume_run, inputs=[run, *who], outputs=[action_note, train["resumed"], tabs], api_name="resume")
    delete.click(lambda name: (gr.update(visible=bool(name)), f"Delete **{name}** and all its files? Click "
                               f"*Confirm delete*." if name else "Pick a run first."), inputs=[run],
                 outputs=[confirm, action_note], api_name=False)
    confirm.click(lambda name, current: on_delete(root, name, current), inputs=[run, selected],
                  outputs=[action_note, confirm, *refreshed], api_name="delete_run")
    report_button.click(lambda name: on_report(root, name), inputs=[run], outputs=[download, action_note],
                        api_name="report")
    zip_button.click(lambda name: on_zip(root, name), inputs=[run], outputs=[download, action_note],
                     api_name="download_zip")
    batch.click(lambda chosen, f: on_batch(root, chosen, f), inputs=[batch_run, batch_input], outputs=[batch_output],
                api_name="predict_file")

    def refresh_page(token=None, request: gr.Request = None):
        return on_refresh(root, None, jobs, _owner(token, request))

    return {"selected": selected, "refresh": refresh_page, "refreshed": refreshed,
            "compare": lambda chosen: on_compare(root, chosen), "comparison": comparison}


def _where(root: Path) -> str:
    try:
        return str(root.relative_to(Path.cwd()))
    except ValueError:
        return str(root)


def _ago(stamp: float) -> str:
    return lft_core.events.duration(time.time() - stamp) + " ago"


RUNS_WIDTHS = ["24%", "14%", "22%", "9%", "9%", "8%", "7%", "7%"]
"""the note (a failed run's reason) comes third and gets a fifth of the width, so it is on screen at 1280 px"""


def _owner(token, request) -> str | None:
    from ui.train_tab import owner_of_page

    return owner_of_page(token, request)


def _runs_frame(root: Path, jobs: JobManager | None = None, owner: str | None = None) -> pd.DataFrame:
    """Every run, with whose it is while it is queued or running: 'yours' (this page's, which its Stop acts on)
    or 'another page's' (visible here, stopped only from the page that started it)."""
    metrics = [m for m in lft_core.METRICS]
    columns = ["run", "status", "note", "method", "dataset", *[m.label for m in metrics], "updated"]
    rows = []
    for r in lft_core.list_runs(root):
        status = r.status + (" (resumable)" if r.resumable else "")
        if jobs is not None and r.status in ("running", "queued"):
            started_by = jobs.owner_of(r.path)
            status += " · yours" if owner and started_by == owner else " · another page's" if started_by else ""
        rows.append({"run": r.name, "status": status, "note": r.message[:160], "method": r.method,
                     "dataset": Path(r.dataset).name if r.dataset else "",
                     **{m.label: round(r.scores[m.key], 4) if m.key in r.scores else None for m in metrics},
                     "updated": _ago(r.updated)})
    return pd.DataFrame(rows, columns=columns)


def on_refresh(root: Path, current=None, jobs: JobManager | None = None, owner: str | None = None):
    complete = _complete(root)
    keep = [c for c in (current or []) if c in complete] or complete[:1]
    return (gr.update(choices=complete, value=keep), _runs_frame(root, jobs, owner),
            gr.update(choices=[r.name for r in lft_core.list_runs(root)]), gr.update(choices=complete))


def on_finished(root: Path, run_dir, current):
    if not run_dir:
        return gr.update(), gr.update(), gr.update(), gr.update()
    name = Path(run_dir).name
    complete = _complete(root)
    return (gr.update(choices=complete, value=[name] if name in complete else current), _runs_frame(root),
            gr.update(choices=[r.name for r in lft_core.list_runs(root)], value=name),
            gr.update(choices=complete, value=name if name in complete else None))


def _checked(root: Path, chosen) -> list[str]:
    """The chosen runs, each confirmed to be a finished run inside the runs folder."""
    if not chosen:
        raise LftError("pick a saved adapter first (train one in the Fine-tune tab)")
    chosen = chosen if isinstance(chosen, list) else [chosen]
    return [str(lft_core.resolve_run(c, root)) for c in chosen]


def on_compare(root: Path, chosen):
    try:
        paths = _checked(root, chosen)
        last = lft_core.read_report(paths[-1])
        bars, per_class, confusion, pareto = lft_core.comparison_figures(paths)
        verdict = f"**{last.run_name}: {last.verdict.headline}**\n" + "\n".join(f"- {d}" for d in last.verdict.details)
        return (verdict, lft_core.summary_table(paths), bars, per_class, confusion, pareto,
                gr.update(choices=example_choices(paths[-1]), value=None),
                gr.update(choices=["(all)"] + last.label_names, value="(all)"), lft_core.changed_rows(paths[-1]))
    except LftError as exc:
        raise error(exc) from None


def on_predict(root: Path, chosen, text, text_pair=None):
    try:
        start = time.perf_counter()
        base, tuned = lft_core.live_predict(_checked(root, chosen)[-1], text, text_pair or None)
        return base, tuned, f"{(time.perf_counter() - start) * 1000:.0f} ms for both models"
    except LftError as exc:
        raise error(exc) from None


def on_changes(root: Path, chosen, only_class, still_wrong):
    try:
        return lft_core.changed_rows(_checked(root, chosen)[-1], None if only_class in (None, "(all)") else only_class,
                                     still_wrong)
    except LftError as exc:
        raise error(exc) from None


def on_add(root: Path, name, current):
    if not name:
        raise gr.Error("pick a run first")
    if name not in _complete(root):
        raise gr.Error(f"{name} is not a finished run; only finished runs can be compared")
    return gr.update(value=list(dict.fromkeys([*(current or []), name])))


def on_resume(jobs: JobManager, name, owner: str | None = None):
    try:
        if not name:
            raise LftError("pick a stopped or interrupted run to resume")
        job = jobs.submit(resume=name, owner=owner)
    except LftError as exc:
        raise error(exc) from None
    return (f"**Resuming** **{job.name}**: follow it in the Fine-tune tab.", f"{job.name}@{time.time()}",
            gr.Tabs(selected="train"))


def on_delete(root: Path, name, current):
    try:
        lft_core.delete_run(name, root)
    except LftError as exc:
        raise error(exc) from None
    return (f"Deleted **{name}**.", gr.update(visible=False), *on_refresh(root, [c for c in current or [] if c != name]))


def on_report(root: Path, name):
    try:
        path = lft_core.RunFolder(lft_core.resolve_run(name or "", root)).report_html
    except LftError as exc:
        raise error(exc) from None
    return str(path), f"report.html of **{name}**: click the file above to open or save it."


def on_zip(root: Path, name):
    try:
        path = lft_core.export_zip(name or "", root)
    except LftError as exc:
        raise error(exc) from None
    size = path.stat().st_size / 2**20
    return str(path), (f"**{path.name}** ({size:.1f} MB): the adapter, tokenizer, model card, report and test "
                       f"predictions. Unpacked anywhere, it loads with plain peft (see its README.md).")


def on_batch(root: Path, chosen, file):
    """Label a file with the run chosen beside it (the accordion's own Run), not the comparison's selection."""
    try:
        if not chosen:
            raise LftError("pick the finished run to label the file with (Run to label with)")
        if file is None:
            raise LftError("upload a file of texts first (csv or jsonl with a text column, or txt with one per line)")
        return str(lft_core.predict_file(_checked(root, chosen)[-1], file if isinstance(file, str) else file.name))
    except LftError as exc:
        raise error(exc) from None


# ---------------------------------------------------------------- export and deploy


def on_space() -> bool:
    """A Hugging Face Space sets SPACE_ID; there the Hub's OAuth sign-in replaces a pasted token."""
    return bool(os.environ.get("SPACE_ID"))


def create_export_and_deploy(root: Path, run: gr.Dropdown, note: gr.Markdown) -> dict:
    """The All runs accordion's export (merged model or ONNX, as a zip) and Hub push. On a Space the push signs in
    with gr.LoginButton (scopes in the README's front matter) and uses that OAuth token; elsewhere a token box."""
    space = on_space()
    with gr.Accordion("Export and deploy", open=False):
        with gr.Row():
            merged = gr.Button("Export merged model", scale=1)
            onnx = gr.Button("Export ONNX", scale=1)
            exported = gr.File(label="Export (zip)", scale=2, height=70)
        with gr.Row():
            repo = gr.Textbox(label="Hub repository", placeholder="your-name/my-adapter", scale=2)
            if space:
                gr.LoginButton(scale=1)
            token = gr.Textbox(label="Access token (write)", type="password", scale=2, visible=not space)
            private = gr.Checkbox(value=True, label="Private", scale=1)
            with_merged = gr.Checkbox(value=False, label="Also the merged model", scale=1)
            push = gr.Button("Push to the Hub", scale=1)

    def push_as_user(name, repo_id, token_text, is_private, also_merged, oauth_token: gr.OAuthToken | None = None):
        return on_push(root, name, repo_id, token_text, is_private, also_merged, oauth_token)

    merged.click(lambda name: on_export(root, name, "merged"), inputs=[run], outputs=[exported, note],
                 api_name="export_merged")
    onnx.click(lambda name: on_export(root, name, "onnx"), inputs=[run], outputs=[exported, note],
               api_name="export_onnx")
    push.click(push_as_user, inputs=[run, repo, token, private, with_merged], outputs=[note], api_name="push")
    return {"push": push_as_user, "token": token, "repo": repo}


def on_export(root: Path, name, kind: str):
    from lft_core import app_export, zip_export

    try:
        result = app_export(name or "", kind, root)
        path = zip_export(result, Path(name).name)
    except LftError as exc:
        raise error(exc) from None
    what = ("loads with transformers alone (AutoModelForSequenceClassification)" if kind == "merged"
            else "runs with onnxruntime")
    return str(path), (f"**{path.name}** ({path.stat().st_size / 2**20:.0f} MB): {what}; it reproduces "
                       f"{result.parity.get('agreement', 0):.1%} of the run's test predictions (export.json).")


def on_push(root: Path, name, repo, token, private, merged=False, oauth_token=None):
    """Push with the signed-in user's OAuth token on a Space, else with the pasted token."""
    if on_space() and oauth_token is None and not (token or "").strip():
        raise gr.Error("sign in with Hugging Face (the button beside the repository) to push", duration=None)
    try:
        url = lft_core.push_to_hub(name or "", (repo or "").strip(), oauth_token or token or "", bool(private), root,
                                   merged=bool(merged))
    except LftError as exc:
        raise error(exc) from None
    return f"Pushed **{name}** to [{url}]({url})" + (" with its merged model (merged/)." if merged else ".")
