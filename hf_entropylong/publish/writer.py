"""Publishing a build: counts of every stage, both configs as parquet, the dataset card, the Hub push.

The output folder. A build writes only into a folder that is empty, new, or marked as this tool's by the file
`.hf_entropylong.json` (which records every file it published there); a non-empty folder without it is refused
unless `overwrite_output_dir` is set, and even then nothing of the user's is deleted: a file of the user's where the
dataset puts one is moved to `.cache/replaced/`. The tool removes only files its marker records as its own. One
build at a time holds the folder's lock (`.cache/build.lock`). Every file is written under a temporary name and
renamed (`files.write_text`).

Publishing is all or nothing from a reader's side (`publish`): the new dataset is written whole into a staging
folder, its files are moved into place beside the previous build's, and the card, whose `configs` name the data
files, is renamed last: `load_dataset(output_dir)` reads the previous dataset up to that rename and the new one
after it. A build that fails before that leaves the previous dataset as it was (and its stage caches, so a rerun
resumes).

The card and `build_config.yaml` name no absolute path of the building machine (`portable_config`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import secrets
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import datasets
import yaml
from filelock import FileLock, Timeout

from ..files import write_text
from ..settings import setting
from ..sources import content_hash
from .card import dataset_license, render_dataset_card
from .counts import BuildCounts
from .plots import PLOTS_DIR, write_build_plots
from .schema import SCHEMA_VERSION

logger = logging.getLogger(__name__)


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
CARD = "README.md"
PUBLISHED = (*TABLES, PLOTS, CARD, "build_config.yaml", "stats.json")
# `.cache/publish-<random>/`: a dataset being written, recorded in the marker before it is made
STAGING_PREFIX = "publish-"


class OutputDirError(ValueError):
    """The output folder cannot be written as asked."""


@dataclass
class Marker:
    """What the folder's marker records: the files this tool published there and its unfinished staging folders
    (names under `.cache/`), both relative to the folder. Only those are ever removed."""

    published: list[str] = dataclasses.field(default_factory=list)
    staging: list[str] = dataclasses.field(default_factory=list)


def read_marker(output_dir: Path) -> Marker:
    """The folder's marker. One that cannot be read (a disk that filled up under an older version) is named in a
    warning and read as recording nothing: the files it listed are then moved aside, never deleted."""
    path = output_dir / MARKER
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
        published = [str(name) for name in content.get("published", [])]
        staging = [str(name) for name in content.get("staging", [])]
    except (OSError, ValueError, AttributeError, TypeError) as error:
        logger.warning("%s cannot be read (%s): it is written again; files it listed are kept.", path, error)
        return Marker()
    files = []
    for name in published:  # an older marker lists whole folders: every file in them was published with them
        parts = Path(name).parts
        if not parts or parts[0] not in PUBLISHED or ".." in parts or Path(name).is_absolute():
            continue  # never a path outside what a build publishes, whatever the marker says
        entry = output_dir / name
        files += (
            sorted(str(f.relative_to(output_dir)) for f in entry.rglob("*") if f.is_file())
            if entry.is_dir()
            else [name]
        )
    return Marker(files, staging)


def write_marker(output_dir: Path, marker: Marker) -> None:
    content = {"written_by": "hf_entropylong", **asdict(marker)}
    write_text(output_dir / MARKER, json.dumps(content, indent=2) + "\n")


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
    write_marker(output_dir, Marker())


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
    in `cache` under the data's content tag. A record that cannot be read is named in a warning and replaced by
    this build's timings.
    """
    record = cache / f"seconds-{data_tag}.json"
    if record.is_file():
        try:
            known = json.loads(record.read_text(encoding="utf-8"))
            if isinstance(known, dict) and all(isinstance(v, int | float) for v in known.values()):
                return known
            raise ValueError("not a mapping of stage names to seconds")
        except (OSError, ValueError) as error:
            logger.warning("%s cannot be read (%s): this build's timings replace it.", record, error)
    cache.mkdir(parents=True, exist_ok=True)
    write_text(record, json.dumps(seconds) + "\n")
    return seconds


def portable_config(config):
    """`config` as the card and `build_config.yaml` show it: every setting that names an absolute local path (the
    output folder, the cache, a local source or model) is written relative to the dataset folder (`output_dir`
    itself as "."), so no path of the machine that built it is published; relative paths stay as given."""
    base = Path(config.output_dir).resolve()

    def portable(value):
        if isinstance(value, list):
            return [portable(item) for item in value]
        if isinstance(value, str) and os.path.isabs(value):
            return os.path.relpath(value, base)
        return value

    changes = {field.name: portable(getattr(config, field.name)) for field in dataclasses.fields(config)}
    return dataclasses.replace(config, **{**changes, "dataset_license": dataset_license(config)})


def write_dataset(folder: Path, packed, dependencies: datasets.Dataset, counts: BuildCounts, config) -> None:
    """Write both configs as parquet shards, the card, the config and the counts into `folder`.

    Shard names carry a hash of the table's content (see `_write_parquet_shards`). `datasets` caches a local
    folder's configs under a key made of the card's path patterns alone, so a rebuild with other content changes
    the patterns, and a rebuild with the same content keeps its file names (nothing new to upload to the Hub).
    `build_config.yaml` holds the licence the card declares (see `cards.dataset_license`) and no absolute local
    path (`portable_config`). The plots of the build's distributions go to `plots/` (`plots.write_build_plots`),
    and the card embeds them.
    """
    data_files = {}
    for name, table in zip(TABLES, (packed, dependencies), strict=True):
        tag = _write_parquet_shards(table, folder / name)
        data_files[name] = f"{name}/train-{tag}-*.parquet"
    published = portable_config(config)
    settings = yaml.safe_dump(asdict(published), sort_keys=False, allow_unicode=True)
    write_text(folder / "build_config.yaml", settings)
    stats = {"schema_version": SCHEMA_VERSION, **asdict(counts)}
    write_text(folder / "stats.json", json.dumps(stats, indent=2) + "\n")
    data_tag = "-".join(pattern.split("-")[1] for pattern in data_files.values())
    seconds = _data_seconds(Path(config.output_dir).resolve() / ".cache", data_tag, counts.seconds)
    plots = write_build_plots(folder)
    card = render_dataset_card(published, counts, data_files, settings, data_seconds=seconds, plots=plots)
    write_text(folder / CARD, card)


def _files_under(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


def _move_aside(output_dir: Path, name: str, replaced: Path) -> None:
    """Move the entry `name` of `output_dir` (not the tool's) into `replaced`, keeping its relative path."""
    target = replaced / name
    target.parent.mkdir(parents=True, exist_ok=True)
    (output_dir / name).rename(target)


def publish(output_dir: Path, packed, dependencies: datasets.Dataset, counts: BuildCounts, config) -> None:
    """Write the dataset whole into a staging folder, then move it into `output_dir`, the card last.

    1. The marker records a new staging folder `.cache/publish-<random>/`, and the dataset is written into it.
    2. The marker records the new files as the tool's, then each is renamed into place: the parquet shards first
       (their names carry their content's hash, so they never replace a file the current card points at), then
       the plots, `stats.json`, `build_config.yaml`, and last the card, `README.md`, whose YAML `configs` name the
       data files: that one rename switches `load_dataset(output_dir)` from the previous dataset to the new one.
       A file in the way that the tool did not publish is moved to `.cache/replaced/<time>/`, never deleted.
    3. The previous build's files that the new one does not have are removed, and the marker records the new
       files only.

    A kill at any point leaves a folder that loads as the previous dataset or the new one; the next publish
    removes what the killed one left (staging folders and files the marker records), and nothing else.

    Raises:
        PublishError: writing failed (a full disk, a folder that cannot be written): one line naming the folder and
            the cause, saying that the folder still holds a whole dataset and how to finish.
    """
    try:
        _publish(output_dir, packed, dependencies, counts, config)
    except (
        OSError,
        ValueError,
    ) as error:  # ValueError: what pyarrow raises for a file cut off by a full disk
        if isinstance(error, OutputDirError):
            raise
        cause = " ".join(str(error).split()) or type(error).__name__
        raise PublishError(
            f"publishing into {output_dir} failed ({type(error).__name__}: {cause}); the folder still holds a whole "
            "dataset (the previous one, or the new one if the failure came after its card) and .cache/ keeps the "
            "work done: free space or fix the cause, then run the same command again."
        ) from error


class PublishError(OSError):
    """Writing the dataset into its folder failed; the folder still holds a whole dataset."""


def _publish(output_dir: Path, packed, dependencies: datasets.Dataset, counts: BuildCounts, config) -> None:
    cache = output_dir / ".cache"
    marker = read_marker(output_dir)
    for name in marker.staging:  # ours: a publish killed half-way
        if name.startswith(STAGING_PREFIX) and "/" not in name:
            shutil.rmtree(cache / name, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    staging = cache / f"{STAGING_PREFIX}{secrets.token_hex(6)}"
    marker.staging = [staging.name]
    write_marker(output_dir, marker)  # recorded before it exists: a kill never leaves one unrecorded
    staging.mkdir()
    write_dataset(staging, packed, dependencies, counts, config)

    new_files = _files_under(staging)
    ours = set(marker.published)
    write_marker(output_dir, Marker(sorted(ours | set(new_files)), [staging.name]))
    replaced = cache / "replaced" / time.strftime("%Y%m%d-%H%M%S")
    for name in sorted(new_files, key=lambda name: (name == CARD, name.split("/")[0] not in TABLES)):
        top = name.split("/")[0]
        in_the_way = output_dir / top
        if top != name and (in_the_way.is_file() or in_the_way.is_symlink()):
            _move_aside(output_dir, top, replaced)  # a file of the user's where a folder of the dataset goes
        target = output_dir / name
        if (target.exists() or target.is_symlink()) and (name not in ours or target.is_dir()):
            _move_aside(output_dir, name, replaced)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / name, target)
    for name in sorted(ours - set(new_files)):  # the previous build's, which the new card no longer names
        (output_dir / name).unlink(missing_ok=True)
    write_marker(output_dir, Marker(new_files, [staging.name]))
    shutil.rmtree(staging)
    write_marker(output_dir, Marker(new_files, []))


class PushError(OSError):
    """The Hub push failed; the dataset is complete in its local folder."""


def push_folder(output_dir: Path, settings: OutputSettings) -> str:
    """Upload the dataset published in `output_dir` to the Hub dataset repo `settings.hub_repo_id`; return its URL.

    Only the files the marker records as published are sent (the card, `build_config.yaml`, `stats.json`, the
    parquet shards, the plots): never `.cache/`, the marker, a report or files of the user's beside them. Shards
    and plots of an earlier build that this one does not have are deleted from the repo, so its card never points
    at stale data. `HfApi.upload_folder` (huggingface_hub 2.4 with hf_xet) uploads in several commits and
    resumes: run the same push again after an interruption and only what is missing is sent.

    Raises:
        PushError: the push failed (no network, no permission, ...): one line naming the repo and the cause,
            saying that the local dataset is complete and how to push again.
    """
    from huggingface_hub import HfApi

    repo_id = settings.hub_repo_id
    try:
        api = HfApi()
        repo = api.create_repo(repo_id, repo_type="dataset", private=settings.hub_private, exist_ok=True)
        api.upload_folder(
            repo_id=repo_id,
            repo_type="dataset",
            folder_path=str(output_dir),
            allow_patterns=read_marker(output_dir).published,
            delete_patterns=[*(f"{name}/*.parquet" for name in TABLES), f"{PLOTS}/*.png"],
            commit_message="Publish an EntropyLong build (hf_entropylong)",
        )
    except Exception as error:  # any failure of the upload: the local dataset stays complete either way
        cause = (str(error).strip().splitlines() or [""])[0] or type(error).__name__
        raise PushError(
            f"pushing {output_dir} to the Hub dataset {repo_id} failed ({type(error).__name__}: {cause}). The "
            f"dataset in {output_dir} is complete; to push it again, run the same build command with "
            "--push_to_hub: every stage is cached, so it only publishes and pushes."
        ) from error
    return str(repo)
