"""Roots and corpus from any `datasets` source, validated and reduced to `id` and `text` columns.

A source is a Hub dataset id (optionally `id::config`), a local data file (jsonl, json, parquet, csv,
txt), a folder (`save_to_disk` output or data files), or `embedded:wiki-summaries`. Rows whose text is
missing, empty or whitespace-only are dropped and counted; a missing text column, a non-text value, an
empty file or a file that is not UTF-8 is an error that names the source, the column and the row or line
(counted from 1, as editors do).

Ids. A row's id is its `id_column` value; where that column is unset, absent or empty (null) in a row, the id is
`<source>#<row>`, the row's number in the source counted from 0: the same on every run. Roots must have distinct
ids (`check_unique_ids`): two roots with one id would be published as two units of one root.

Identity. A local file or folder is identified by a hash of its bytes, and `datasets` converts it into a cache
folder named by that hash: `datasets` alone keys a local file by its path and modification time, so a file
edited with its time stamp restored would give the old rows back. A Hub source is identified by the
fingerprint `datasets` gives it (which follows the repository's revision).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import datasets

from .models import EMBEDDED_CORPUS, embedded_corpus_file, is_embedded
from .settings import setting

FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv", ".txt": "text"}
TEXT_FORMATS = {".jsonl", ".json", ".csv", ".txt"}


@dataclass
class RootSettings:
    """The documents the build extends with verified contexts."""

    roots: str = setting(
        "HuggingFaceFW/fineweb-edu::sample-10BT",
        help="Roots: Hub id[::config], local file or folder, or embedded:wiki-summaries.",
    )
    roots_split: str = setting("train", help="Split of the roots source.")
    roots_text_column: str = setting("text", help="Column holding each root's text.")
    roots_id_column: str | None = setting(
        "id",
        help="Column holding a stable, unique id; <source>#<row> (row number from 0) where unset, absent or empty.",
    )
    num_roots: int | None = setting(
        100_000, help="Roots sampled from the source (seeded by `seed`); all of them when unset."
    )

    def __post_init__(self):
        if self.num_roots is not None and self.num_roots < 1:
            raise ValueError(f"num_roots must be positive (or unset for all), got {self.num_roots}.")


@dataclass
class CorpusSettings:
    """The documents candidates are retrieved from."""

    corpus: list[str] = setting(
        default_factory=lambda: [
            "HuggingFaceFW/fineweb-edu::sample-10BT",
            "HuggingFaceTB/cosmopedia::web_samples_v2",
        ],
        help="One or more corpus sources (like `roots`), concatenated.",
    )
    corpus_split: str = setting("train", help="Split of every corpus source.")
    corpus_text_column: str = setting("text", help="Column holding each corpus document's text.")
    corpus_id_column: str | None = setting(
        "id",
        help="Column holding a stable, unique id; <source>#<row> (row number from 0) where unset, absent or empty.",
    )

    def __post_init__(self):
        if isinstance(self.corpus, str):
            self.corpus = [self.corpus]
        if not self.corpus:
            raise ValueError("corpus needs at least one source.")


class SourceError(ValueError):
    """A roots or corpus source that cannot be used as given."""


@dataclass
class SourceCounts:
    """Rows read, kept and dropped as empty, and the source's identity (see the module docstring)."""

    rows: int
    kept: int
    empty: int
    identity: str


def check_utf8(path: Path, chunk_bytes: int = 1 << 20) -> bool:
    """Raise `SourceError` naming the line of the first byte sequence that is not UTF-8.

    Returns:
        Whether the file holds anything besides white space (read in the same pass).
    """
    line = 1
    tail = b""
    has_content = False
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_bytes):
            has_content = has_content or bool(chunk.strip())
            data = tail + chunk
            try:
                data.decode("utf-8")
                tail = b""
            except UnicodeDecodeError as error:
                if error.reason == "unexpected end of data" and len(data) - error.start < 4:
                    tail = data[error.start :]  # a character cut by the chunk boundary
                    data = data[: error.start]
                else:
                    line += data[: error.start].count(b"\n")
                    raise SourceError(
                        f"{path}: line {line} is not valid UTF-8 ({error.reason} at byte {error.start}); "
                        "re-encode the file as UTF-8."
                    ) from None
            line += data.count(b"\n")
    if tail:
        raise SourceError(
            f"{path}: ends inside a UTF-8 character (line {line}); the file is truncated or not UTF-8."
        )
    return has_content


def _check_text_file(path: Path) -> None:
    """A text data file must be UTF-8 and hold something besides white space."""
    if not check_utf8(path):
        raise SourceError(f"{path}: the file is empty; give a file with at least one document.")


def _files(path: Path) -> list[Path]:
    return [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())


def content_hash(path: Path) -> str:
    """Hash of the bytes of a file, or of a folder's files with their relative names."""
    digest = hashlib.blake2b(digest_size=16)
    for file in _files(path):
        digest.update(f"{file.relative_to(path) if file != path else ''}\0".encode())
        with file.open("rb") as handle:
            while chunk := handle.read(1 << 24):
                digest.update(chunk)
    return digest.hexdigest()


def load_raw_source(source: str, split: str = "train") -> datasets.Dataset:
    """`source` as a dataset with all its columns (see the module docstring for what a source is)."""
    return _load_with_identity(source, split)[0]


def looks_like_a_path(source: str) -> bool:
    """Whether `source` can only mean a local path: a data-file extension, a leading `/`, `.` or `~`, or a folder
    part that exists here. Hub ids have none of these, so such a source is never sent to the Hub."""
    path = Path(source.partition("::")[0])
    return (
        path.suffix.lower() in FILE_BUILDERS
        or source.startswith(("/", ".", "~"))
        or (path.parent != Path(".") and path.parent.is_dir())
    )


def _load_with_identity(source: str, split: str) -> tuple[datasets.Dataset, str]:
    if is_embedded(source):
        if source != EMBEDDED_CORPUS:
            raise SourceError(f"Unknown embedded source {source!r}; known: {EMBEDDED_CORPUS}.")
        raw = datasets.load_dataset("json", data_files=str(embedded_corpus_file()), split="train")
        return raw, source
    path = Path(source)
    if not path.exists() and looks_like_a_path(source):
        raise SourceError(
            f"{source!r}: no such file or folder (a path, so the Hub was not asked); check the path and the "
            "current directory."
        )
    if path.exists() and not (path / "dataset_info.json").exists() and not (path / "state.json").exists():
        digest = content_hash(path)
        cache = str(Path(datasets.config.HF_DATASETS_CACHE) / "hf_entropylong-sources" / digest)
        return _load_local(path, split, cache), f"{source}@{digest}"
    if path.is_dir():  # save_to_disk output: its own state fingerprint
        loaded = datasets.load_from_disk(str(path))
        raw = loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
        return raw, raw._fingerprint
    name, _, config = source.partition("::")
    raw = datasets.load_dataset(name, config or None, split=split)
    return raw, raw._fingerprint


def _load_local(path: Path, split: str, cache_dir: str) -> datasets.Dataset:
    """A local data file or folder of data files, converted into `cache_dir`."""
    if path.is_file():
        builder = FILE_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise SourceError(f"{path}: unsupported file type; use one of {', '.join(FILE_BUILDERS)}.")
        if path.suffix.lower() in TEXT_FORMATS:
            _check_text_file(path)
        return datasets.load_dataset(builder, data_files=str(path), split="train", cache_dir=cache_dir)
    data = [file for file in _files(path) if file.suffix.lower() in FILE_BUILDERS]
    if not data:
        raise SourceError(f"{path}: no data file ({', '.join(FILE_BUILDERS)}) in this folder.")
    for file in data:
        if file.suffix.lower() in TEXT_FORMATS:
            _check_text_file(file)
    return datasets.load_dataset(str(path), split=split, cache_dir=cache_dir)


def first_broken_json_line(path: Path) -> str | None:
    """Where a JSON-lines file first fails to parse ("line N (counted from 1) is not valid JSON: why"), if it does.

    pyarrow's own message counts rows from 0 and skips blank lines; this reads the file as an editor shows it.
    """
    if path.suffix.lower() not in (".jsonl", ".json") or not path.is_file():
        return None
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    json.loads(line)
                except ValueError as error:
                    if (
                        number == 1
                        and line.lstrip().startswith(("[", "{"))
                        and path.suffix.lower() == ".json"
                    ):
                        return None  # a JSON document over several lines, not JSON lines
                    return f"line {number} is not valid JSON ({error.msg}, column {error.colno})"
    return None


def check_unique_ids(dataset: datasets.Dataset, source: str, role: str = "roots") -> None:
    """Refuse a source whose `id` column repeats an id: its rows would be published as one root twice."""
    seen: set[str] = set()
    for value in dataset["id"]:
        if value in seen:
            raise SourceError(
                f"{role} {source!r}: the id {value!r} is used by more than one row; give every row its own id, or "
                f"set --{role}_id_column to a column that has one."
            )
        seen.add(value)


def load_text_source(
    source: str,
    split: str = "train",
    text_column: str = "text",
    id_column: str | None = "id",
    role: str = "source",
) -> tuple[datasets.Dataset, SourceCounts]:
    """Load `source` as a dataset with string columns `id` and `text`, dropping empty texts.

    Args:
        source: Hub id (`org/name` or `org/name::config`), local file or folder, or `embedded:wiki-summaries`.
        split: the split to read.
        text_column: the column holding the document text.
        id_column: the column holding a stable document id; when `None` or absent, or empty in a row, that row's id
            is `"<source>#<row>"` (its row number in the source, counted from 0).
        role: `"roots"` or `"corpus"`, used in error messages.

    Returns:
        The dataset, and the counts of rows read, kept and dropped as empty with the source's identity.
    """
    try:
        raw, identity = _load_with_identity(source, split)
    except datasets.exceptions.DatasetGenerationError as error:
        cause = error.__cause__ or error
        broken = first_broken_json_line(Path(source))
        if broken:
            raise SourceError(f"{role} {source!r}: {broken}; fix or remove that line.") from error
        raise SourceError(f"{role} {source!r} could not be read: {cause}") from error
    except (FileNotFoundError, ConnectionError) as error:  # DatasetNotFoundError included
        raise SourceError(
            f"{role} {source!r}: no such local file or folder, and no Hub dataset by that name could be reached "
            f"({str(error).splitlines()[0]}); check the path or the Hub id."
        ) from error
    if text_column not in raw.column_names:
        raise SourceError(
            f"{role} {source!r} has no text column {text_column!r} (columns: {', '.join(raw.column_names)}); "
            f"set --{role}_text_column."
        )
    has_ids = id_column is not None and id_column in raw.column_names

    def to_id_text(batch: dict, indices: list[int]) -> dict:
        texts = []
        for index, text in zip(indices, batch[text_column], strict=True):
            if text is not None and not isinstance(text, str):
                raise SourceError(
                    f"{role} {source!r}, row {index + 1}: column {text_column!r} holds {type(text).__name__}, "
                    "not text."
                )
            texts.append(text or "")
        values = batch[id_column] if has_ids else [None] * len(indices)
        ids = [
            f"{source}#{index}" if value is None else str(value)
            for index, value in zip(indices, values, strict=True)
        ]
        return {"id": ids, "text": texts}

    table = raw.map(
        to_id_text,
        batched=True,
        with_indices=True,
        remove_columns=raw.column_names,
        desc=f"Reading {role}",
    )
    kept = table.filter(lambda batch: [bool(text.strip()) for text in batch["text"]], batched=True)
    return kept, SourceCounts(rows=len(raw), kept=len(kept), empty=len(raw) - len(kept), identity=identity)
