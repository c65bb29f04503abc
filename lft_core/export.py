"""Export a finished run for deployment: a merged model folder that loads with transformers alone (no peft), and an
ONNX model that runs with onnxruntime alone. Each export is written into a temporary folder beside its target,
checked against the run's own test predictions, and only then renamed into place; its export.json records the
check. A folder that is not an export of ours is never written into. push_to_hub uploads a run (and its merged
export) to the Hub: it lives here, not in runs.py, because it uses the merged export, which itself reads the run."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lft_core.errors import LftError, first_line

EXPORT_INFO = "export.json"
MIN_AGREEMENT = 0.995
"""Share of the run's test predictions an export must reproduce (the issue's bar); below it nothing is written."""
ONNX_FILE = "model.onnx"
ONNX_OPSET = 18
ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
KINDS = ("merged", "onnx")


@dataclass
class ExportResult:
    path: Path
    kind: str
    """merged or onnx"""
    parity: dict = field(default_factory=dict)
    """rows, agreement with the run's test predictions, max |logit difference| against torch"""

    def summary(self) -> str:
        p = self.parity
        text = (f"{self.kind} export of {p.get('run', '?')} in {self.path}: reproduces {p['agreement']:.1%} of the "
                f"run's {p['rows']} test predictions")
        if "max_abs_diff" in p:
            text += f"; max |logit difference| {p['max_abs_diff']:.1e} against {p['compared_with']}"
        return text


# ---------------------------------------------------------------- checking the inputs


def find_run(name_or_path: str | Path, root: Path | None = None) -> Path:
    """A finished run: a folder path (anywhere, as `predict --adapter` takes), or a run name in the runs folder."""
    from lft_core.runs import RunFolder, is_complete, resolve_run

    given = Path(str(name_or_path or "").strip()).expanduser()
    if not str(name_or_path or "").strip():
        raise LftError("pick a run to export (a run name or the path of its folder)")
    if root is None and given.is_dir() and RunFolder(given).status_file.exists():
        if not is_complete(given):
            raise LftError(f"run {given.name} is not a finished run (it was stopped, failed, or is still training); "
                           f"only finished runs can be exported")
        return given.absolute()
    return resolve_run(str(name_or_path), root)


def is_export(folder: Path) -> bool:
    try:
        return json.loads((Path(folder) / EXPORT_INFO).read_text()).get("exported_by") == "lft_core"
    except (OSError, ValueError, AttributeError):
        return False


def check_target(out: str | Path, overwrite: bool = False) -> Path:
    """The export folder, checked before any heavy work: a new path, an empty folder, or (with overwrite) an
    earlier export of ours. Anything else is refused with its contents named."""
    if not str(out or "").strip():
        raise LftError("give the folder to export into, e.g. --merged exports/my-model")
    path = Path(out).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise LftError(f"export target {path} is a file; give a folder path that does not exist yet")
    if path.is_dir() and any(path.iterdir()):
        if not is_export(path):
            names = sorted(p.name for p in path.iterdir())
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            raise LftError(f"export target {path} exists and is not an export of lft_core (it holds {shown}); "
                           f"choose a new folder, nothing was written")
        if not overwrite:
            raise LftError(f"export target {path} already holds an export; pass --overwrite to replace it or choose "
                           f"another folder")
    parent = next((p for p in path.parents if p.exists()), Path("/"))
    if not os.access(parent, os.W_OK):
        raise LftError(f"cannot create export folder {path}: {parent} is not writable; choose a writable folder")
    return path


def check_mergeable(run_dir: Path) -> None:
    """Prompt-learning methods add virtual tokens in front of the input rather than changing weights: there is
    nothing to fold into the base, so they cannot be merged (nor exported to ONNX, which runs the merged model)."""
    from peft import PeftConfig

    from lft_core.runs import RunFolder

    if not RunFolder(run_dir).adapter_config.exists():
        return  # a plain method's folder is a whole model already
    try:
        config = PeftConfig.from_pretrained(str(run_dir))
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise LftError(f"{RunFolder(run_dir).adapter_config} is damaged ({first_line(exc)}); the run folder is "
                       f"incomplete") \
            from None
    if config.is_prompt_learning:
        kind = str(config.peft_type.value if hasattr(config.peft_type, "value") else config.peft_type)
        raise LftError(f"run {Path(run_dir).name} uses {kind.lower().replace('_', ' ')}, a prompt-learning method "
                       f"whose virtual tokens cannot be merged into the base's weights; deploy the adapter folder "
                       f"itself with peft (see its README.md)")


# ---------------------------------------------------------------- writing atomically


@contextlib.contextmanager
def _staged(target: Path):
    """A temporary folder beside `target` to write an export into: renamed into place when the block ends, removed
    when it raises (a stopped or failed export leaves no half-written folder)."""
    staging = _staging(target)
    try:
        yield staging
        _move_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _staging(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp's 0700 would stay on the renamed export
    return staging


def _move_into_place(staging: Path, target: Path) -> None:
    """Rename the finished export in; an old export of ours is renamed away first and removed after."""
    old = None
    if target.is_dir():
        if any(target.iterdir()):
            old = target.with_name(f".{target.name}.old-{os.getpid()}-{int(time.time())}")
            os.replace(target, old)
        else:
            target.rmdir()
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _write_info(folder: Path, kind: str, run_dir: Path, parity: dict, extra: dict | None = None) -> None:
    from lft_core.report import display_dataset

    cfg = _run_config(run_dir)
    info = {"exported_by": "lft_core", "kind": kind, "run": run_dir.name, "model": Path(cfg.get("model", "")).name,
            "dataset": display_dataset(cfg), "method": cfg.get("method"), "max_length": cfg.get("max_length"),
            "truncation": cfg.get("truncation", "head"), "parity": parity, "exported": time.time(),
            "versions": _versions(), **(extra or {})}
    (folder / EXPORT_INFO).write_text(json.dumps(info, indent=2))


def _versions() -> dict:
    import importlib.metadata

    found = {}
    for name in ("torch", "transformers", "peft", "onnx", "onnxruntime", "onnxscript"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def _run_config(run_dir: Path) -> dict:
    from lft_core.runs import read_run_config

    return read_run_config(run_dir)


# ---------------------------------------------------------------- the run's test rows


def test_rows(run_dir: Path) -> tuple[list[str], list[str]]:
    """The run's test texts and the fine-tuned model's predictions for them, as the run recorded them."""
    import pandas as pd

    from lft_core.runs import RunFolder

    path = RunFolder(run_dir).predictions
    if not path.exists():
        raise LftError(f"{run_dir} has no {RunFolder.PREDICTIONS} to check the export against; it is not a finished "
                       f"run")
    rows = pd.read_csv(path, keep_default_na=False)
    return rows["text"].astype(str).tolist(), rows["finetuned_prediction"].astype(str).tolist()


def _agreement(predicted: list[str], recorded: list[str]) -> float:
    return float(np.mean([a == b for a, b in zip(predicted, recorded)])) if recorded else 1.0


def _check_parity(parity: dict, what: str) -> None:
    if parity["agreement"] < MIN_AGREEMENT:
        raise LftError(f"the {what} reproduces only {parity['agreement']:.1%} of the run's {parity['rows']} test "
                       f"predictions (at least {MIN_AGREEMENT:.1%} needed); nothing was written")


# ---------------------------------------------------------------- merged


def _merged_model(run_dir: Path, texts: list[str], cfg: dict):
    """The run's model with its adapter folded in, in fp32, and the adapter's own logits on `texts` (None for a
    plain method, whose folder is a whole model already)."""
    from lft_core.evaluate import predict_logits
    from lft_core.runs import load_adapter

    model, tokenizer = load_adapter(run_dir)
    before = None
    if hasattr(model, "merge_and_unload"):
        before = predict_logits(model, tokenizer, texts, cfg["max_length"], truncation=cfg.get("truncation", "head"))
        try:
            model = model.merge_and_unload()
        except (ValueError, NotImplementedError, AttributeError, TypeError) as exc:
            raise LftError(f"run {run_dir.name}'s method ({cfg.get('method')}) cannot be merged into its base: "
                           f"{first_line(exc)}; deploy the adapter folder itself with peft") from None
    model.eval()
    for attribute in ("_name_or_path",):  # a server path has no business in a deployed config
        if hasattr(model.config, attribute):
            setattr(model.config, attribute, "")
    return model, tokenizer, before


def _torch_parity(model, tokenizer, texts, recorded, cfg, before) -> tuple[dict, np.ndarray]:
    from lft_core.evaluate import predict_logits

    logits = predict_logits(model, tokenizer, texts, cfg["max_length"], truncation=cfg.get("truncation", "head"))
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    parity = {"rows": len(texts), "agreement": _agreement([labels[i] for i in logits.argmax(-1)], recorded)}
    if before is not None:
        parity.update(max_abs_diff=float(np.abs(logits - before).max()) if len(texts) else 0.0,
                      compared_with="the unmerged adapter")
    return parity, logits


def export_merged(run: str | Path, out: str | Path, overwrite: bool = False, root: Path | None = None) -> ExportResult:
    """A standalone model folder: the adapter merged into its base (merge_and_unload), save_pretrained in
    safetensors with the label names in config.json, and the tokenizer; loads with
    AutoModelForSequenceClassification.from_pretrained(out), no peft needed. Raises LftError for a run that is
    not finished, a method that cannot merge, or a target that is not ours."""
    from lft_core.report import merged_model_card, read_report

    run_dir = find_run(run, root)
    target = check_target(out, overwrite)
    check_mergeable(run_dir)
    cfg = _run_config(run_dir)
    texts, recorded = test_rows(run_dir)
    model, tokenizer, before = _merged_model(run_dir, texts, cfg)
    parity, _ = _torch_parity(model, tokenizer, texts, recorded, cfg, before)
    parity["run"] = run_dir.name
    _check_parity(parity, "merged model")
    with _staged(target) as staging:
        model.save_pretrained(str(staging), safe_serialization=True)
        tokenizer.save_pretrained(str(staging))
        _write_info(staging, "merged", run_dir, parity)
        (staging / "README.md").write_text(merged_model_card(read_report(run_dir), parity))
    return ExportResult(target, "merged", parity)


# ---------------------------------------------------------------- ONNX


class _Logits:
    """Wraps a classifier so the exported graph takes the tokenizer's tensors and returns only the logits."""

    def __new__(cls, model, names: list[str]):
        import torch

        class Logits(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, *tensors):
                return self.model(**dict(zip(names, tensors))).logits

        return Logits().eval()


def _require_onnx() -> None:
    import importlib.util

    missing = [p for p in ("onnx", "onnxruntime", "onnxscript") if importlib.util.find_spec(p) is None]
    if missing:
        raise LftError(f"ONNX export needs {', '.join(missing)}: pip install -r requirements.txt")


def _export_graph(model, tokenizer, path: Path) -> list[str]:
    """torch.onnx.export (the dynamo exporter, onnxscript) with batch and sequence length dynamic."""
    import torch

    names = [n for n in ONNX_INPUTS if n in tokenizer.model_input_names]
    sample = tokenizer(["an example text to trace the graph with", "a shorter one"], padding=True, return_tensors="pt")
    args = tuple(sample[n] for n in names)
    batch, sequence = torch.export.Dim("batch", min=1, max=4096), torch.export.Dim("sequence", min=2, max=8192)
    shapes = ({0: batch, 1: sequence},) * len(names)
    large = sum(p.numel() * p.element_size() for p in model.parameters()) > 1.8 * 2**30  # protobuf's 2 GB limit
    quiet = logging.getLogger("torch.onnx")  # it warns, once per export, about torchvision ops we do not use
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with torch.inference_mode(False), torch.no_grad():
            program = torch.onnx.export(_Logits(model, names), args, dynamo=True, input_names=names,
                                        output_names=["logits"], dynamic_shapes=(shapes,), opset_version=ONNX_OPSET,
                                        external_data=large, verbose=False)
    finally:
        quiet.setLevel(level)
    program.save(str(path), external_data=large)
    return names


def _onnx_parity(folder: Path, torch_logits: np.ndarray, texts, recorded, cfg) -> dict:
    predictor = OnnxPredictor(folder, max_length=cfg["max_length"], truncation=cfg.get("truncation", "head"))
    logits = predictor.logits(texts)
    labels = predictor.labels
    predicted = [labels[i] for i in logits.argmax(-1)]
    return {"rows": len(texts), "agreement": _agreement(predicted, recorded),
            "agreement_with_torch": _agreement(predicted, [labels[i] for i in torch_logits.argmax(-1)]),
            "max_abs_diff": float(np.abs(logits - torch_logits).max()) if len(texts) else 0.0,
            "compared_with": "the merged torch model (fp32)"}


def export_onnx(run: str | Path, out: str | Path, overwrite: bool = False, root: Path | None = None) -> ExportResult:
    """model.onnx (the merged model, exported with torch.onnx's dynamo exporter), config.json with the label names
    and the tokenizer, checked with onnxruntime against the torch logits on the run's test rows; the figures go in
    export.json. Raises LftError as export_merged does, and when the ONNX packages are missing."""
    from lft_core.report import onnx_model_card, read_report

    run_dir = find_run(run, root)
    target = check_target(out, overwrite)
    check_mergeable(run_dir)
    _require_onnx()
    cfg = _run_config(run_dir)
    texts, recorded = test_rows(run_dir)
    model, tokenizer, _ = _merged_model(run_dir, texts, cfg)
    _, torch_logits = _torch_parity(model, tokenizer, texts, recorded, cfg, None)
    with _staged(target) as staging:
        try:
            inputs = _export_graph(model, tokenizer, staging / ONNX_FILE)
        except LftError:
            raise
        except Exception as exc:  # torch.export raises many types for a model it cannot trace
            raise LftError(f"torch.onnx could not export run {run_dir.name}'s model "
                           f"({type(model).__name__}): {first_line(exc)}") from None
        model.config.save_pretrained(str(staging))
        tokenizer.save_pretrained(str(staging))
        _write_info(staging, "onnx", run_dir, {}, {"inputs": inputs, "opset": ONNX_OPSET})
        parity = {**_onnx_parity(staging, torch_logits, texts, recorded, cfg), "run": run_dir.name}
        _check_parity(parity, "ONNX model")
        _write_info(staging, "onnx", run_dir, parity, {"inputs": inputs, "opset": ONNX_OPSET})
        (staging / "README.md").write_text(onnx_model_card(read_report(run_dir), parity))
    return ExportResult(target, "onnx", parity)


class OnnxPredictor:
    """An ONNX export that labels texts with onnxruntime, tokenized as the run was (max length, truncation);
    the same predict() as predict.Predictor."""

    def __init__(self, folder: str | Path, max_length: int | None = None, truncation: str | None = None,
                 threads: int | None = None):
        import onnxruntime
        from transformers import AutoConfig, AutoTokenizer

        from lft_core.runs import RunFolder

        folder = Path(folder)
        if not (folder / ONNX_FILE).exists():
            hint = (f"; export it first: python -m lft_core export --adapter {folder} --onnx {folder.name}-onnx"
                    if RunFolder(folder).status_file.exists() else "")
            raise LftError(f"{folder} has no {ONNX_FILE}: --backend onnx takes the folder of an ONNX export{hint}")
        try:
            info = json.loads((folder / EXPORT_INFO).read_text()) if (folder / EXPORT_INFO).exists() else {}
            config = AutoConfig.from_pretrained(str(folder))
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
            options = onnxruntime.SessionOptions()
            if threads:
                options.intra_op_num_threads = threads
            self.session = onnxruntime.InferenceSession(str(folder / ONNX_FILE), options,
                                                        providers=["CPUExecutionProvider"])
        except (OSError, ValueError) as exc:
            raise LftError(f"could not load the ONNX export {folder}: {first_line(exc)}") from None
        except Exception as exc:  # onnxruntime's own error types for a damaged model file
            raise LftError(f"could not load the ONNX export {folder}: {first_line(exc)}; export the run again") from None
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.max_length = max_length or info.get("max_length") or 512
        self.truncation = truncation or info.get("truncation") or "head"
        self.labels = [config.id2label[i] for i in range(config.num_labels)]

    def logits(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        from lft_core.evaluate import _batches, encode

        ids, _ = encode(self.tokenizer, texts, self.max_length, self.truncation)
        out = np.zeros((len(ids), len(self.labels)), dtype=np.float32)
        if not ids:
            return out
        lengths = [len(row) for row in ids]
        order = np.argsort([-n for n in lengths], kind="stable")
        pad = self.tokenizer.pad_token_id or 0
        for rows in _batches(order, lengths, batch_size or None):
            width = max(lengths[i] for i in rows)
            input_ids = np.full((len(rows), width), pad, dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for j, i in enumerate(rows):
                row = ids[i]
                if self.tokenizer.padding_side == "left":
                    input_ids[j, width - len(row):], mask[j, width - len(row):] = row, 1
                else:
                    input_ids[j, :len(row)], mask[j, :len(row)] = row, 1
            feeds = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
            out[rows] = self.session.run(["logits"], {n: feeds[n] for n in self.inputs})[0]
        return out

    def probabilities(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        from lft_core.evaluate import softmax

        return softmax(self.logits(texts, batch_size))

    def predict(self, texts: list[str], batch_size: int | None = None, every_class: bool = False):
        import pandas as pd

        probs = self.probabilities(texts, batch_size)
        best = probs.argmax(-1)
        frame = pd.DataFrame({"text": texts, "label": [self.labels[i] for i in best],
                              "probability": probs[np.arange(len(texts)), best].round(4)})
        if every_class:
            for i, name in enumerate(self.labels):
                frame[f"p_{name}"] = probs[:, i].round(4)
        return frame


def export(run: str | Path, kind: str, out: str | Path, overwrite: bool = False,
           root: Path | None = None) -> ExportResult:
    """export_merged or export_onnx by name ('merged', 'onnx')."""
    if kind not in KINDS:
        raise LftError(f"unknown export kind {kind!r}; choose one of: {', '.join(KINDS)}")
    return (export_merged if kind == "merged" else export_onnx)(run, out, overwrite, root)


def app_export_dir(run_dir: Path, kind: str) -> Path:
    """Where the app keeps a run's exports: inside the run folder, so deleting the run removes them too."""
    from lft_core.runs import RunFolder

    return RunFolder(run_dir).exports / kind


def app_export(run: str | Path, kind: str, root: Path | None = None) -> ExportResult:
    """The run's export of `kind` in its own folder (app_export_dir): the existing one if it was made after the
    run finished, else a new one."""
    from lft_core.runs import read_status, resolve_run

    run_dir = resolve_run(str(run), root)
    folder = app_export_dir(run_dir, kind)
    if is_export(folder):
        info = json.loads((folder / EXPORT_INFO).read_text())
        if info.get("exported", 0) >= read_status(run_dir).get("finished", float("inf")):
            return ExportResult(folder, kind, info.get("parity", {}))
    return export(run_dir, kind, folder, overwrite=True, root=root)


def zip_export(result: ExportResult, run_name: str) -> Path:
    """A zip of an export folder in a temporary folder, named after the run and the kind."""
    target = Path(tempfile.mkdtemp(prefix="lft-export-")) / f"{run_name}-{result.kind}"
    return Path(shutil.make_archive(str(target), "zip", root_dir=result.path.parent, base_dir=result.path.name))


def push_to_hub(name_or_path: str, repo_id: str, token, private: bool = True, root: Path | None = None,
                merged: bool = False) -> str:
    """Upload a finished run to a Hub model repository (created if needed): the adapter, tokenizer, model card and
    reports, and with merged=True the merged model under merged/. `token` is a write token, or a Space's OAuth
    token (gr.OAuthToken, whose .token is used). Returns the repository's address."""
    from lft_core.hub import hub_reachable
    from lft_core.runs import SHARED_FILES, resolve_run

    run_dir = resolve_run(name_or_path, root)
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", repo_id or ""):
        raise LftError(f"repository id {repo_id!r} must look like 'your-name/{run_dir.name}'")
    token = str(getattr(token, "token", token) or "").strip()
    if not token:
        raise LftError("a Hugging Face access token with write permission is needed to push (huggingface.co/settings/tokens)")
    if not hub_reachable(timeout=3.0):
        raise LftError("the Hugging Face Hub is unreachable from this server (offline?); download the zip instead")
    merged_dir = None
    if merged:  # before anything is created on the Hub: a run that cannot merge leaves no empty repository
        merged_dir = app_export(run_dir, "merged", root).path
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(folder_path=str(run_dir), repo_id=repo_id, allow_patterns=list(SHARED_FILES),
                          commit_message=f"Upload {run_dir.name} (lft_core)")
        if merged_dir is not None:
            api.upload_folder(folder_path=str(merged_dir), repo_id=repo_id, path_in_repo="merged",
                              commit_message=f"Upload the merged model of {run_dir.name} (lft_core)")
    except Exception as exc:  # the Hub raises many types (auth, permission, network)
        raise LftError(f"push to {repo_id} failed: {first_line(exc)}") from None
    return f"https://huggingface.co/{repo_id}"
