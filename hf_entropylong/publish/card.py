"""The dataset card of a build: `dataset_card/template.md` rendered with huggingface_hub's `DatasetCard`.

The YAML header declares both configs (`default`: packed sequences, `dependencies`: one row per root) over the
parquet files, so `load_dataset(folder)` and `load_dataset("org/name")` read the same data. It says only what the
build knows: the licence is the embedded corpus's (CC BY-SA 4.0) when every source is embedded, else the one the
user declared with `dataset_license` (the build cannot read a local file's licence, and the card says so);
`source_datasets` lists the Hub datasets the text comes from; the build time is that of the build that computed
the data, not of a rerun that found it cached. The card opens with the build's headline counts (the table of
`hf-entropylong report`, `counts.headline_rows`) and embeds the plots written beside it (`plots/*.png`, see
`plots.write_build_plots`) with relative links, which the Hub renders.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from huggingface_hub import DatasetCard, DatasetCardData

from ..models import is_embedded
from ..paths import PACKAGE_DIR
from .counts import headline_rows, method_label
from .schema import SCHEMA_VERSION

TEMPLATE = PACKAGE_DIR / "templates" / "dataset_card.md"
EMBEDDED_LICENSE = "cc-by-sa-4.0"


def _size_category(n: int) -> str:
    for limit, name in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
    ):
        if n < limit:
            return name
    return "1M<n<10M"


def _sources(config) -> list[str]:
    return [config.roots, *config.corpus]


def dataset_license(config) -> str:
    """The licence the card declares: the embedded corpus's when every source is embedded, else the declared one."""
    return (
        EMBEDDED_LICENSE
        if all(is_embedded(source) for source in _sources(config))
        else config.dataset_license
    )


def hub_source_datasets(config) -> list[str]:
    """The Hub dataset ids among the sources (`org/name`, without `::config`), in order, once each."""
    ids = []
    for source in _sources(config):
        repo_id = source.split("::")[0]
        is_hub_id = repo_id.count("/") == 1 and not is_embedded(source) and not Path(repo_id).exists()
        if is_hub_id and repo_id not in ids:
            ids.append(repo_id)
    return ids


def render_dataset_card(
    config,
    counts,
    data_files: dict[str, str],
    config_yaml: str,
    data_seconds: dict[str, float] | None = None,
    template_path: Path = TEMPLATE,
    plots: Sequence[tuple[str, str]] = (),
) -> str:
    """Render the card for a build with `config` (a `BuildConfig`) and its `publish.BuildCounts`.

    Args:
        config (`BuildConfig`): the build's settings.
        counts (`publish.BuildCounts`): what every stage kept and dropped, and this run's seconds per stage.
        data_files (`dict[str, str]`): each config written (`default`, `dependencies`) and its parquet path pattern.
        config_yaml (`str`): the build configuration as written to `build_config.yaml`.
        data_seconds (`dict[str, float]`, *optional*): seconds per stage of the build that computed this data, when
            this run reused it from the cache; defaults to `counts.seconds`.
        template_path (`Path`): the card template.
        plots (`Sequence[tuple[str, str]]`, *optional*): (path relative to the card, title) of each plot to embed.
    """
    license_id = dataset_license(config)
    source_datasets = [f"extended|{repo_id}" for repo_id in hub_source_datasets(config)]
    configs = [
        {"config_name": name, "data_files": [{"split": "train", "path": pattern}]}
        for name, pattern in data_files.items()
    ]
    length = f"{config.max_seq_length // 1024}K"
    label = method_label(config.method, asdict(config))
    pretty_name = config.pretty_name or (
        f"EntropyLong {length}" if config.method == "entropylong" else f"{label} baseline {length}"
    )
    card_data = DatasetCardData(
        language="en",
        license=license_id,
        pretty_name=pretty_name,
        size_categories=_size_category(counts.sequences),
        source_datasets=source_datasets or None,
        task_categories=["text-generation"],
        tags=["long-context", "entropylong", "pretraining"]
        + ([] if config.method == "entropylong" else ["baseline", label.replace(" ", "-")]),
        configs=configs,
    )
    data_seconds = data_seconds or counts.seconds
    card = DatasetCard.from_template(
        card_data,
        template_path=str(template_path),
        pretty_name=pretty_name,
        method_label=label,
        repo_id=config.hub_repo_id or config.output_dir,
        config=config,
        counts=counts,
        license=license_id,
        embedded_sources=all(is_embedded(source) for source in _sources(config)),
        data_seconds=data_seconds,
        rerun_seconds=None if data_seconds == counts.seconds else round(sum(counts.seconds.values()), 1),
        config_yaml=config_yaml,
        headline=headline_rows(asdict(counts), asdict(config)),
        schema_version=SCHEMA_VERSION,
        plots=list(plots),
    )
    return str(card)
