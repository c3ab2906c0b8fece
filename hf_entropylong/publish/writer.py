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
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import datasets
import yaml
from filelock import FileLock, Timeout

from ..settings import setting
from ..sources import content_hash
from .card import dataset_license, render_dataset_card
from .counts import BuildCounts
from .plots import PLOTS_DIR, write_build_plots
from .schema import SCHEMA_VERSION


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
    stats = {"schema_version": SCHEMA_VERSION, **asdict(counts)}
    (folder / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
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
