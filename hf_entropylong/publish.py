"""Publishing a build: counts of every stage, both configs as parquet, the dataset card, the Hub push.

The output folder. A build writes only into a folder that is empty, new, or marked as this tool's by the file
`.hf_entropylong.json` (which lists what it published there); a non-empty folder without it is refused unless
`overwrite_output_dir` is set, and even then nothing of the user's is deleted: the entries a build publishes
(`default/`, `dependencies/`, `plots/`, `README.md`, `build_config.yaml`, `stats.json`) that it did not write before are moved
to `.cache/replaced/`. One build at a time holds the folder's lock (`.cache/build.lock`).

Publishing is all or nothing: the new dataset is written whole under `.cache/publish/`, then each entry is swapped
into place and the previous build's entries are removed; a build that fails before that leaves the previous
dataset as it was (and its stage caches, so a rerun resumes).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import datasets
import numpy as np
import yaml
from filelock import FileLock, Timeout

from .cards import dataset_license, render_dataset_card
from .pack import packing_stats
from .plots import PLOTS_DIR, write_build_plots
from .sources import SourceCounts, content_hash
from .stage import setting


@dataclass
class OutputSettings:
    """Where the build is written and published, and what its card says."""

    output_neutral: ClassVar[tuple[str, ...]] = (
        "output_dir",
        "overwrite_output_dir",
        "dataset_license",
        "pretty_name",
        "push_to_hub",
        "hub_repo_id",
        "hub_private",
    )

    output_dir: str = setting(
        "outputs/entropylong",
        help="Dataset folder (both configs, card); stage caches go to its .cache/.",
    )
    overwrite_output_dir: bool = setting(
        False,
        help="Write into a non-empty folder that holds no build of this tool (its files are kept, never deleted).",
    )
    dataset_license: str = setting(
        "odc-by", help="Licence of the sources, for the card (embedded sources: cc-by-sa-4.0)."
    )
    pretty_name: str | None = setting(None, help="Title of the dataset card.")
    push_to_hub: bool = setting(False, help="Upload the dataset folder to the Hub.")
    hub_repo_id: str | None = setting(None, help="Hub dataset repository, ORG/NAME.")
    hub_private: bool = setting(False, help="Create the Hub repository private.")

    def __post_init__(self):
        if self.push_to_hub and not self.hub_repo_id:
            raise ValueError("--push_to_hub needs --hub_repo_id ORG/NAME.")


@dataclass
class BuildCounts:
    """What every stage kept and dropped, and why: read by the summary, the dataset card and the tests.

    For a baseline (`method`), positions count only those with an entropy (its keywords and meta-chunks are not
    high-entropy positions), "verified" means placed, and ΔI is averaged where it was computed.
    """

    method: str
    roots_read: int
    roots_empty: int
    roots: int
    roots_by_status: dict[str, int]
    corpus_documents: int
    corpus_empty: int
    high_entropy_positions: int
    candidates_excluded_self: int
    candidates_excluded_near_duplicate: int
    candidates_tried: int
    distinct_candidates_tried: int
    verified_dependencies: int
    verified_contexts: int
    mean_delta_i: float | None
    contexts_trimmed_for_length: int
    units: int
    units_left_over: int
    sequences: int
    tokens: int
    padding_tokens: int
    mean_dependency_distance: float | None
    seconds: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_tables(
        cls,
        method: str,
        statuses: tuple[str, ...],
        root_counts: SourceCounts,
        corpus_counts: list[SourceCounts],
        dependencies: datasets.Dataset,
        packed: datasets.Dataset | None,
        units_left_over: int,
    ) -> BuildCounts:
        """Counts from the per-root rows (`dependencies`) and the packed rows; `statuses` lists every status."""
        by_status = dict.fromkeys(statuses, 0)
        positions = excluded_self = excluded_copy = tried = distinct = contexts = trimmed = kept = 0
        deltas, distances = [], []
        columns = ["status", "positions", "candidates", "verified_contexts", "num_excluded_self",
                   "num_excluded_near_duplicate", "num_contexts_trimmed", "dependency_distances",
                   "num_unit_tokens"]  # fmt: skip
        for batch in dependencies.select_columns(columns).iter(batch_size=1_000):
            for status in batch["status"]:
                by_status[status] += 1
            positions += sum(math.isfinite(p["entropy"]) for row in batch["positions"] for p in row)
            excluded_self += sum(batch["num_excluded_self"])
            excluded_copy += sum(batch["num_excluded_near_duplicate"])
            tried += sum(map(len, batch["candidates"]))
            distinct += sum(len({c["corpus_index"] for c in row}) for row in batch["candidates"])
            contexts += sum(map(len, batch["verified_contexts"]))
            trimmed += sum(batch["num_contexts_trimmed"])
            kept += sum(c["verified"] for row in batch["candidates"] for c in row)
            deltas += [c["delta_i"] for row in batch["candidates"] for c in row
                       if c["verified"] and math.isfinite(c["delta_i"])]  # fmt: skip
            distances += [d for row, unit in zip(batch["dependency_distances"], batch["num_unit_tokens"],
                          strict=True) if unit for d in row]  # fmt: skip
        packing = packing_stats(packed) if packed is not None else None
        return cls(
            method=method,
            roots_read=root_counts.rows,
            roots_empty=root_counts.empty,
            roots=len(dependencies),
            roots_by_status=by_status,
            corpus_documents=sum(c.kept for c in corpus_counts),
            corpus_empty=sum(c.empty for c in corpus_counts),
            high_entropy_positions=positions,
            candidates_excluded_self=excluded_self,
            candidates_excluded_near_duplicate=excluded_copy,
            candidates_tried=tried,
            distinct_candidates_tried=distinct,
            verified_dependencies=kept,
            verified_contexts=contexts,
            mean_delta_i=round(float(np.mean(deltas)), 4) if deltas else None,
            contexts_trimmed_for_length=trimmed,
            units=packing.units if packing else 0,
            units_left_over=units_left_over,
            sequences=packing.rows if packing else 0,
            tokens=packing.tokens if packing else 0,
            padding_tokens=packing.padding_tokens if packing else 0,
            mean_dependency_distance=round(float(np.mean(distances)), 1) if distances else None,
        )


MARKER = ".hf_entropylong.json"
TABLES = ("default", "dependencies")  # the dataset's configs, one folder of parquet shards each
PLOTS = PLOTS_DIR  # the build's distributions as PNG files, embedded in the card (`plots.write_build_plots`)
PUBLISHED = (*TABLES, PLOTS, "README.md", "build_config.yaml", "stats.json")


class OutputDirError(ValueError):
    """The output folder cannot be written as asked."""


def claim_output_dir(output_dir: Path, overwrite: bool) -> None:
    """Mark `output_dir` as this tool's, refusing a non-empty folder it did not write unless `overwrite`."""
    if (output_dir / MARKER).is_file():
        return
    if output_dir.exists() and not output_dir.is_dir():
        raise OutputDirError(f"output_dir {output_dir} is a file; give a folder path.")
    present = sorted(entry.name for entry in output_dir.iterdir()) if output_dir.exists() else []
    if present and not overwrite:
        listed = ", ".join(present[:3]) + (", ..." if len(present) > 3 else "")
        raise OutputDirError(
            f"output_dir {output_dir} is not empty ({listed}) and holds no build of hf_entropylong: choose an "
            "empty or new folder, or pass --overwrite_output_dir to write the dataset beside those files "
            "(any of theirs in the way is moved to .cache/replaced/, never deleted)."
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    _write_marker(output_dir, [])


def _write_marker(output_dir: Path, published: list[str]) -> None:
    content = {"written_by": "hf_entropylong", "published": published}
    (output_dir / MARKER).write_text(json.dumps(content, indent=2) + "\n")


def lock_output_dir(output_dir: Path) -> FileLock:
    """The held lock of `output_dir` (release it when the build ends); a second build fails at once."""
    lock = FileLock(output_dir / ".cache" / "build.lock")
    (output_dir / ".cache").mkdir(parents=True, exist_ok=True)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise OutputDirError(
            f"another build is writing into {output_dir} (it holds {lock.lock_file}); wait for it to finish or "
            "choose another --output_dir."
        ) from None
    return lock


# The Hub's dataset viewer reads whole row groups and gives up above ~300 MB: at 131,072 tokens a packed row holds
# ~1 MB (ids and text), so row groups are sized by bytes, not rows.
ROW_GROUP_BYTES = 100 * 2**20
SHARD_BYTES = 500 * 10**6


def _write_parquet_shards(table: datasets.Dataset, folder: Path) -> str:
    """Write `table` into `folder` as parquet shards named by a hash of their content; return that tag.

    Shards hold at most `SHARD_BYTES` and row groups at most `ROW_GROUP_BYTES` of in-memory data (one row at least),
    with a page index, so the Hub's viewer can read any row. Identical data gives identical files and names, however
    the table was made (a cached rerun's tables have other `datasets` fingerprints).
    """
    folder.mkdir(parents=True, exist_ok=True)
    row_bytes = table.data.nbytes / max(1, table.data.num_rows)
    rows_per_group = max(1, int(ROW_GROUP_BYTES // max(1.0, row_bytes)))
    num_shards = max(1, math.ceil(table.data.nbytes / SHARD_BYTES))
    digest = hashlib.sha256()
    unnamed = []
    for index in range(num_shards):
        path = folder / f"shard-{index:05d}.parquet.partial"
        shard = table.shard(num_shards, index, contiguous=True)
        shard.to_parquet(str(path), batch_size=rows_per_group, write_page_index=True)
        digest.update(content_hash(path).encode())
        unnamed.append(path)
    tag = digest.hexdigest()[:12]
    for index, path in enumerate(unnamed):
        path.rename(folder / f"train-{tag}-{index:05d}-of-{num_shards:05d}.parquet")
    return tag


def _data_seconds(cache: Path, data_tag: str, seconds: dict[str, float]) -> dict[str, float]:
    """The stage timings of the build that first published this data (`seconds` when this one did).

    A rerun that finds every stage cached takes seconds; the card keeps the cost of computing the data, recorded
    in `cache` under the data's content tag.
    """
    record = cache / f"seconds-{data_tag}.json"
    if record.is_file():
        return json.loads(record.read_text())
    cache.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(seconds) + "\n")
    return seconds


def write_dataset(folder: Path, packed, dependencies: datasets.Dataset, counts: BuildCounts, config) -> None:
    """Write both configs as parquet shards, the card, the config and the counts into `folder`.

    Shard names carry a hash of the table's content (see `_write_parquet_shards`). `datasets` caches a local
    folder's configs under a key made of the card's path patterns alone, so a rebuild with other content changes
    the patterns, and a rebuild with the same content keeps its file names (nothing new to upload to the Hub).
    `build_config.yaml` holds the licence the card declares (see `cards.dataset_license`). The plots of the
    build's distributions go to `plots/` (`plots.write_build_plots`), and the card embeds them.
    """
    data_files = {}
    for name, table in zip(TABLES, (packed, dependencies), strict=True):
        tag = _write_parquet_shards(table, folder / name)
        data_files[name] = f"{name}/train-{tag}-*.parquet"
    config = dataclasses.replace(config, dataset_license=dataset_license(config))
    settings = yaml.safe_dump(asdict(config), sort_keys=False, allow_unicode=True)
    (folder / "build_config.yaml").write_text(settings, encoding="utf-8")
    (folder / "stats.json").write_text(json.dumps(asdict(counts), indent=2) + "\n")
    data_tag = "-".join(pattern.split("-")[1] for pattern in data_files.values())
    seconds = _data_seconds(Path(config.output_dir).resolve() / ".cache", data_tag, counts.seconds)
    plots = write_build_plots(folder)
    card = render_dataset_card(config, counts, data_files, settings, data_seconds=seconds, plots=plots)
    (folder / "README.md").write_text(card, encoding="utf-8")


def publish(output_dir: Path, packed, dependencies: datasets.Dataset, counts: BuildCounts, config) -> None:
    """Write the dataset whole under `.cache/publish/`, then swap it into `output_dir` (see the module docstring)."""
    cache = output_dir / ".cache"
    staging, previous = cache / "publish", cache / "previous"
    for leftover in (staging, previous):  # ours: a publish that died half-way
        shutil.rmtree(leftover, ignore_errors=True)
    write_dataset(staging, packed, dependencies, counts, config)
    ours = set(json.loads((output_dir / MARKER).read_text()).get("published", []))
    replaced = cache / "replaced" / time.strftime("%Y%m%d-%H%M%S")
    previous.mkdir()
    for name in PUBLISHED:
        target = output_dir / name
        if target.exists() or target.is_symlink():
            aside = previous if name in ours else replaced
            aside.mkdir(parents=True, exist_ok=True)
            target.rename(aside / name)
        (staging / name).rename(target)
    _write_marker(output_dir, list(PUBLISHED))
    shutil.rmtree(previous)
    shutil.rmtree(staging)


def push_folder(output_dir: Path, settings: OutputSettings) -> str:
    """Upload the dataset published in `output_dir` to the Hub dataset repo `settings.hub_repo_id`; return its URL.

    Only the published entries are sent (the card, `build_config.yaml`, `stats.json`, the parquet shards, the
    plots): never `.cache/`, the folder's marker, a report or files of the user's beside them. Shards and plots
    of an earlier build that this one does not have are deleted from the repo, so its card never points at
    stale data. `HfApi.upload_folder`
    (huggingface_hub 2.4 with hf_xet) uploads in several commits and resumes: run the same push again after an
    interruption and only what is missing is sent.
    """
    from huggingface_hub import HfApi

    api = HfApi()
    repo = api.create_repo(
        settings.hub_repo_id, repo_type="dataset", private=settings.hub_private, exist_ok=True
    )
    folders = [*(f"{name}/*.parquet" for name in TABLES), f"{PLOTS}/*.png"]
    api.upload_folder(
        repo_id=settings.hub_repo_id,
        repo_type="dataset",
        folder_path=str(output_dir),
        allow_patterns=[*folders, *(name for name in PUBLISHED if name not in (*TABLES, PLOTS))],
        delete_patterns=folders,
        commit_message="Publish an EntropyLong build (hf_entropylong)",
    )
    return str(repo)


def print_summary(counts: BuildCounts, output_dir: str) -> None:
    statuses = ", ".join(f"{status} {n}" for status, n in counts.roots_by_status.items())
    rows = [
        ("roots", f"{counts.roots} ({statuses}); {counts.roots_empty} empty dropped"),
        ("corpus documents", counts.corpus_documents),
        ("high-entropy positions", counts.high_entropy_positions),
        (
            "candidates tried",
            f"{counts.candidates_tried} ({counts.distinct_candidates_tried} distinct per root); excluded: "
            f"{counts.candidates_excluded_self} self, {counts.candidates_excluded_near_duplicate} near-duplicate",
        ),
        (
            "verified dependencies",
            f"{counts.verified_dependencies} in {counts.verified_contexts} contexts, mean ΔI {counts.mean_delta_i}",
        )
        if counts.method == "entropylong"
        else (
            "placed, not verified",
            f"{counts.verified_dependencies} (position, document) pairs, {counts.verified_contexts} documents",
        ),
        ("mean dependency distance", f"{counts.mean_dependency_distance or '—'} tokens"),
        (
            "units",
            f"{counts.units} in sequences, {counts.units_left_over} left over in under-filled rows; "
            f"{counts.contexts_trimmed_for_length} contexts trimmed for length",
        ),
        ("sequences", counts.sequences),
        ("tokens", f"{counts.tokens} ({counts.padding_tokens} padding)"),
        (
            "seconds",
            ", ".join(f"{stage} {s}" for stage, s in counts.seconds.items())
            + f"; total {sum(counts.seconds.values()):.1f}",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    name = "EntropyLong" if counts.method == "entropylong" else f"{counts.method} baseline"
    print(f"\n{name} build written to {output_dir}", file=sys.stderr)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}", file=sys.stderr)
