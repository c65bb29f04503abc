"""Report: plotly figures, markdown tables, the verdict and the model card, built from metrics (no training code).
The app, the notebook and the run folder's report.html all draw the same figures from here."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import plotly.graph_objects as go
from plotly.subplots import make_subplots

PLOTLY_BUNDLE = Path(__file__).parent / "assets" / "plotly-cartesian-4.1.1.min.js.gz"
BASE_COLOR, TUNED_COLOR = "#9aa5b1", "#2f7ed8"


def metrics_bar(rows: dict[str, dict]) -> go.Figure:
    """Accuracy and macro-F1 per model; rows maps a label ('base', 'fine-tuned', a run name) to metrics."""
    fig = go.Figure()
    palette = [BASE_COLOR, TUNED_COLOR, "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1"]
    for i, (label, m) in enumerate(rows.items()):
        values = [m["accuracy"], m["macro_f1"]]
        fig.add_bar(name=label, x=["accuracy", "macro-F1"], y=values, marker_color=palette[i % len(palette)],
                    text=[f"{v:.3f}" for v in values], textposition="outside")
    fig.update_layout(title="Test metrics", barmode="group", yaxis_range=[0, 1.08], height=380,
                      margin=dict(t=50, b=40, l=40, r=20), legend=dict(orientation="h", y=-0.15))
    return fig


def per_class_bar(base: dict, tuned: dict) -> go.Figure:
    names = list(tuned["per_class"])
    fig = go.Figure()
    fig.add_bar(name="base", x=names, y=[base["per_class"][n]["f1"] for n in names], marker_color=BASE_COLOR)
    fig.add_bar(name="fine-tuned", x=names, y=[tuned["per_class"][n]["f1"] for n in names], marker_color=TUNED_COLOR)
    fig.update_layout(title="F1 per class", barmode="group", yaxis_range=[0, 1.05], height=360,
                      margin=dict(t=50, b=40, l=40, r=20))
    return fig


def confusion_pair(base: dict, tuned: dict, names: list[str]) -> go.Figure:
    fig = make_subplots(rows=1, cols=2, subplot_titles=("base", "fine-tuned"), horizontal_spacing=0.12)
    for col, metrics in ((1, base), (2, tuned)):
        z = metrics["confusion"]
        fig.add_trace(go.Heatmap(z=z, x=names, y=names, colorscale="Blues", showscale=False,
                                 text=z, texttemplate="%{text}", hovertemplate="true %{y}<br>predicted %{x}: %{z}<extra></extra>"),
                      row=1, col=col)
        fig.update_xaxes(title_text="predicted", row=1, col=col)
        fig.update_yaxes(title_text="true", autorange="reversed", row=1, col=col)
    fig.update_layout(title="Confusion matrices (test)", height=420, margin=dict(t=70, b=40, l=60, r=20))
    return fig


def confusion_single(metrics: dict, names: list[str], title: str = "Confusion matrix") -> go.Figure:
    z = metrics["confusion"]
    fig = go.Figure(go.Heatmap(z=z, x=names, y=names, colorscale="Blues", showscale=False, text=z,
                               texttemplate="%{text}"))
    fig.update_layout(title=title, height=380, xaxis_title="predicted", yaxis_title="true",
                      yaxis_autorange="reversed", margin=dict(t=50, b=40, l=60, r=20))
    return fig


def training_curves(losses: list, epochs: list[dict]) -> go.Figure:
    """Training loss per logged step, with the validation accuracy of each epoch on a second axis."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    if losses:
        steps, values = zip(*losses)
        fig.add_trace(go.Scatter(x=list(steps), y=list(values), mode="lines+markers", name="train loss",
                                 line=dict(color=TUNED_COLOR)), secondary_y=False)
    if epochs:
        fig.add_trace(go.Scatter(x=[e["step"] for e in epochs], y=[e["accuracy"] for e in epochs],
                                 mode="lines+markers", name="validation accuracy", line=dict(color="#f28e2b", dash="dot"),
                                 text=[f"epoch {e['epoch']}" for e in epochs]), secondary_y=True)
    fig.update_layout(title="Training", height=360, margin=dict(t=50, b=40, l=50, r=50),
                      legend=dict(orientation="h", y=-0.2))
    fig.update_xaxes(title_text="optimizer step")
    fig.update_yaxes(title_text="loss", secondary_y=False)
    fig.update_yaxes(title_text="val accuracy", range=[0, 1.05], secondary_y=True)
    return fig


def verdict(base: dict, tuned: dict) -> str:
    gain = tuned["accuracy"] - base["accuracy"]
    if gain > 0.005:
        word = "improved"
    elif gain < -0.005:
        word = "got worse"
    else:
        word = "did not change"
    return (f"Fine-tuning {word}: test accuracy {base['accuracy']:.3f} -> {tuned['accuracy']:.3f} "
            f"({gain * 100:+.1f} points), macro-F1 {base['macro_f1']:.3f} -> {tuned['macro_f1']:.3f}.")


def comparison_rows(report: dict) -> list[tuple[str, str, str]]:
    base, tuned = report["base_metrics"], report["finetuned_metrics"]
    rows = [("accuracy", f"{base['accuracy']:.4f}", f"{tuned['accuracy']:.4f}"),
            ("macro-F1", f"{base['macro_f1']:.4f}", f"{tuned['macro_f1']:.4f}")]
    for name, scores in tuned["per_class"].items():
        rows.append((f"F1 {name}", f"{base['per_class'][name]['f1']:.4f}", f"{scores['f1']:.4f}"))
    return rows


def comparison_markdown(report: dict) -> str:
    lines = ["| metric | base | fine-tuned |", "|---|---|---|"]
    lines += [f"| {m} | {b} | {t} |" for m, b, t in comparison_rows(report)]
    return "\n".join(lines)


def _facts(report: dict) -> list[tuple[str, str]]:
    params = report["parameters"]
    timing = report["timing"]
    return [
        ("model", report["config"]["model"]),
        ("dataset", f"{report['config']['dataset']} (train {report['data']['train']}, validation "
                    f"{report['data']['validation']}, test {report['data']['test']})"),
        ("method", report["config"]["method"]),
        ("trainable parameters", f"{params['trainable']:,} of {params['total']:,} ({params['trainable_percent']:.3f}%)"),
        ("train time", f"{timing['train_s']:.1f} s ({report['throughput']['train_tokens_per_s']:.0f} tokens/s, "
                       f"{report.get('training_precision', 'fp32')} training, fp32 evaluation)"),
        ("eval time (base, fine-tuned)", f"{timing['base_eval_s']:.1f} s, {timing['finetuned_eval_s']:.1f} s"),
        ("peak memory (RSS)", f"{report['peak_memory_mb']:.0f} MB"),
        ("best epoch", str(report["best_epoch"])),
        ("reload check", f"max |logit difference| {report['reload_check']['max_abs_diff']:.2e} "
                         f"on {report['reload_check'].get('test_rows', report['data']['test'])} test rows "
                         f"({'passed' if report['reload_check']['passed'] else 'FAILED'})"),
        ("seed", str(report["config"]["seed"])),
    ]


def report_markdown(report: dict) -> str:
    facts = "\n".join(f"- **{k}**: {v}" for k, v in _facts(report))
    return f"# Run {report['run_name']}\n\n{report['verdict']}\n\n{comparison_markdown(report)}\n\n{facts}\n"


def figures_for(report: dict) -> list[go.Figure]:
    base, tuned = report["base_metrics"], report["finetuned_metrics"]
    names = report["data"]["label_names"]
    return [metrics_bar({"base": base, "fine-tuned": tuned}), confusion_pair(base, tuned, names),
            training_curves(report["history"]["losses"], report["history"]["epochs"]), per_class_bar(base, tuned)]


def html_page(title: str, intro_html: str, figures: list[go.Figure]) -> str:
    """A self-contained page: plotly.js (the cartesian bundle) travels gzip+base64 inside it and is unpacked
    by the browser, so the page works offline and the run folder stays small."""
    bundle = base64.b64encode(PLOTLY_BUNDLE.read_bytes()).decode()
    divs = "\n".join(f'<div id="fig{i}" class="fig"></div>' for i in range(len(figures)))
    specs = json.dumps([json.loads(f.to_json()) for f in figures])
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}.fig{{margin:1.5em 0}}</style></head>
<body><h1>{html.escape(title)}</h1>{intro_html}{divs}
<script>
const FIGS = {specs};
(async () => {{
  const bytes = Uint8Array.from(atob("{bundle}"), c => c.charCodeAt(0));
  const code = await new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"))).text();
  const s = document.createElement("script"); s.textContent = code; document.head.appendChild(s);
  FIGS.forEach((f, i) => Plotly.newPlot("fig" + i, f.data, f.layout, {{responsive: true}}));
}})();
</script></body></html>"""


def report_html(report: dict) -> str:
    rows = "".join(f"<tr><td>{html.escape(m)}</td><td>{b}</td><td>{t}</td></tr>" for m, b, t in comparison_rows(report))
    facts = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in _facts(report))
    intro = (f"<p><b>{html.escape(report['verdict'])}</b></p><table><tr><th>metric</th><th>base</th>"
             f"<th>fine-tuned</th></tr>{rows}</table><ul>{facts}</ul>")
    return html_page(f"Run {report['run_name']}", intro, figures_for(report))


def model_card(report: dict) -> str:
    """README.md for the adapter folder: Hub-style front matter, results, and how to load it without lft_core."""
    cfg = report["config"]
    base_id = report["base_model"]
    peft_run = report["method_kind"] == "peft"
    loader = ("from peft import AutoPeftModelForSequenceClassification as Loader" if peft_run
              else "from transformers import AutoModelForSequenceClassification as Loader")
    return f"""---
library_name: {"peft" if peft_run else "transformers"}
base_model: {base_id}
pipeline_tag: text-classification
tags: [lft_core, {cfg['method']}, text-classification]
metrics: [accuracy, f1]
---
# {report['run_name']}

{cfg['method']} fine-tune of `{base_id}` for text classification on `{cfg['dataset']}`
({len(report['data']['label_names'])} classes: {', '.join(report['data']['label_names'])}).

{report['verdict']}

{comparison_markdown(report)}

Trainable parameters: {report['parameters']['trainable']:,} of {report['parameters']['total']:,}.
Seed {cfg['seed']}, {cfg['epochs']} epoch(s), learning rate {report['learning_rate']:g}, max length {cfg['max_length']}.

## Use

```python
import torch
from transformers import AutoTokenizer
{loader}

model = Loader.from_pretrained("path/to/this/folder").eval()
tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")
batch = tokenizer(["some text"], return_tensors="pt", truncation=True, max_length={cfg['max_length']})
with torch.no_grad():
    probs = model(**batch).logits.softmax(-1)[0]
print(model.config.id2label[int(probs.argmax())], float(probs.max()))
```

`adapter_config.json` points at `{report['reload_base']}`: the base weights with this run's label names and
head size, so the folder loads without extra arguments. On another machine, load the base `{base_id}` with
`num_labels={len(report['data']['label_names'])}` and then `PeftModel.from_pretrained(base, folder)`.
"""


def class_balance(balance) -> go.Figure:
    """Examples per class in each split (balance: a frame with 'class' and one column per split)."""
    fig = go.Figure()
    for split in [c for c in balance.columns if c != "class"]:
        fig.add_bar(name=split, x=balance["class"], y=balance[split])
    fig.update_layout(title="Class balance", barmode="group", height=320, margin=dict(t=50, b=40, l=40, r=20))
    return fig


def length_histogram(lengths: list[int], max_length: int) -> go.Figure:
    share = sum(n > max_length for n in lengths) / max(len(lengths), 1)
    fig = go.Figure(go.Histogram(x=lengths, nbinsx=50, marker_color=TUNED_COLOR, name="train texts"))
    fig.add_vline(x=max_length, line_dash="dash", line_color="#e15759",
                  annotation_text=f"max_length {max_length}: {share:.0%} truncated")
    fig.update_layout(title="Tokens per train text", height=320, xaxis_title="tokens", yaxis_title="texts",
                      margin=dict(t=50, b=40, l=40, r=20))
    return fig
