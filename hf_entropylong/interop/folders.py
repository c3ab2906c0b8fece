"""What export, import and re-tokenizing share: reading a packed source, and writing an output folder whole.

Output. Each command writes into `OUT` only when it does not exist or is an empty folder (a non-empty one is refused,
whatever it holds: nothing is ever overwritten). Everything is written into the staging folder `.OUT.partial` beside
it, marked as this tool's by the file `.hf_entropylong_partial`, and renamed to `OUT` at the end: `OUT` appears
whole or not at all. A staging folder left by a killed run is removed by the next one (only when it carries the
mark); a run that fails removes its own.

Published folders. `import` and `retokenize` write the layout of a build (`publish/writer.py`): `default/` (packed
rows), `dependencies/` (one row per root or imported document), `stats.json` (`publish.BuildCounts` and the
command's own counts), `build_config.yaml` (the settings that made it) and the dataset card `README.md`, whose
`configs` name the parquet files, so `load_dataset(OUT)`, `hf-entropylong report OUT`, `export` and training read
it like a build. The per-root columns are EntropyLong's (`DEPENDENCY_FEATURES`); what an import does not know is
empty (no positions, candidates or contexts), 0 or NaN.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from pathlib import Path

import datasets
import yaml
from huggingface_hub import DatasetCard, DatasetCardData

from ..builder.runner import COLUMNS
from ..files import write_text
from ..paths import PACKAGE_DIR
from ..publish.counts import BuildCounts, headline_rows
from ..publish.plots import read_yaml, table_files
from ..publish.schema import SCHEMA_VERSION
from ..publish.writer import _write_parquet_shards
from ..sources import load_raw_source

STAGING_MARK = ".hf_entropylong_partial"
CARD_TEMPLATE = PACKAGE_DIR / "templates" / "interop_card.md"
DEPENDENCY_FEATURES = datasets.Features(
    {
        "root_id": datasets.Value("string"),
        "root_text": datasets.Value("string"),
        **{name: feature for name, feature in COLUMNS.items() if name != "unit_input_ids"},
    }
)
"""The per-root table of a build (`builder.runner.COLUMNS` with the root's id and text, without the unit's ids)."""


@contextlib.contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """Yield a staging folder that becomes `out` when the block ends without an error (see the module docstring)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        what = "is a file" if not out.is_dir() else "is not empty"
        raise FileExistsError(f"{out} {what}: choose a new or empty folder (nothing is overwritten).")
    staging = out.parent / f".{out.name}.partial"
    if staging.exists():
        if not (staging / STAGING_MARK).is_file():
            raise FileExistsError(
                f"{staging} exists and was not written by hf_entropylong: move it away or choose another folder."
            )
        shutil.rmtree(staging)  # a killed run's, by its mark
    staging.mkdir(parents=True)
    (staging / STAGING_MARK).touch()
    try:
        yield staging
        (staging / STAGING_MARK).unlink()
        if out.exists():
            out.rmdir()
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def is_published(folder: Path) -> bool:
    """Whether `folder` holds a published dataset of this package's layout (a build, an import, a re-tokenizing)."""
    return folder.is_dir() and (folder / "stats.json").is_file() and bool(table_files(folder, "default"))


def load_packed(source: str, split: str = "train") -> datasets.Dataset:
    """The packed rows of `source`: a published folder's `default` config, or any dataset source."""
    folder = Path(source)
    if is_published(folder):
        return datasets.Dataset.from_parquet([str(path) for path in table_files(folder, "default")])
    return load_raw_source(source, split)


def load_dependencies(folder: Path) -> datasets.Dataset:
    """The per-root table of a published folder."""
    return datasets.Dataset.from_parquet([str(path) for path in table_files(folder, "dependencies")])


def read_published(folder: Path) -> tuple[dict, dict]:
    """The `stats.json` and `build_config.yaml` of a published folder (a one-line error when it is not one)."""
    if not is_published(folder) or not (folder / "build_config.yaml").is_file():
        raise FileNotFoundError(
            f"{folder} is not a published hf_entropylong dataset (no stats.json, build_config.yaml or default/): "
            "give the output_dir of a build."
        )
    return json.loads((folder / "stats.json").read_text()), read_yaml(folder / "build_config.yaml")


def empty_dependencies(ids: list[str], texts: list[str], lengths: list[int], status: str) -> dict:
    """Per-root rows for documents that carry no dependency information: what is not known is empty, 0 or NaN."""
    rows = {"root_id": ids, "root_text": texts}
    for name, feature in DEPENDENCY_FEATURES.items():
        if name in rows:
            continue
        if isinstance(feature, datasets.List):
            rows[name] = [[] for _ in ids]
        elif feature.dtype == "string":
            rows[name] = [status] * len(ids) if name == "status" else [""] * len(ids)
        elif feature.dtype.startswith("float"):
            rows[name] = [float("nan")] * len(ids)
        else:
            rows[name] = [0] * len(ids)
    rows["num_tokens"] = rows["num_unit_tokens"] = list(lengths)
    return rows


def write_published(
    folder: Path,
    packed: datasets.Dataset,
    dependencies: datasets.Dataset,
    counts: BuildCounts,
    extra_counts: Mapping,
    settings: Mapping,
    card: Mapping,
) -> None:
    """Write both configs, `stats.json`, `build_config.yaml` and the card (`templates/interop_card.md`).

    Args:
        folder: the (staging) folder to write into.
        packed: rows of `publish.packing.pack_units`' columns plus `text`.
        dependencies: the per-root table (`DEPENDENCY_FEATURES`).
        counts: recounted from both tables (`BuildCounts.from_tables`).
        extra_counts: the command's own counts, under `stats.json`'s key `interop`.
        settings: what `build_config.yaml` records.
        card: what the card template reads besides the counts: `title`, `what` (a paragraph), `command`,
            `rows` ((label, value) pairs of the command's counts), `tokenizer` and `license` (or None).
    """
    data_files = {}
    for name, table in (("default", packed), ("dependencies", dependencies)):
        tag = _write_parquet_shards(table, folder / name)
        data_files[name] = f"{name}/train-{tag}-*.parquet"
    stats = {"schema_version": SCHEMA_VERSION, **asdict(counts), "interop": dict(extra_counts)}
    write_text(folder / "stats.json", json.dumps(stats, indent=2) + "\n")
    config_yaml = yaml.safe_dump(dict(settings), sort_keys=False, allow_unicode=True)
    write_text(folder / "build_config.yaml", config_yaml)
    card_data = DatasetCardData(
        language="en",
        license=card.get("license"),
        pretty_name=card["title"],
        task_categories=["text-generation"],
        tags=["long-context", "entropylong", "pretraining"],
        configs=[
            {"config_name": name, "data_files": [{"split": "train", "path": pattern}]}
            for name, pattern in data_files.items()
        ],
    )
    rendered = DatasetCard.from_template(
        card_data,
        template_path=str(CARD_TEMPLATE),
        headline=headline_rows(asdict(counts), dict(settings)),
        config_yaml=config_yaml,
        schema_version=SCHEMA_VERSION,
        **card,
    )
    write_text(folder / "README.md", str(rendered))
