"""The dataset card of a build: `dataset_card/template.md` rendered with huggingface_hub's `DatasetCard`.

The YAML header declares both configs (`default`: packed sequences, `dependencies`: one row per root) over the
parquet files, so `load_dataset(folder)` and `load_dataset("org/name")` read the same data.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import DatasetCard, DatasetCardData

TEMPLATE = Path(__file__).resolve().parent / "templates" / "dataset_card.md"
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


def render_dataset_card(
    config, counts, data_files: dict[str, str], config_yaml: str, template_path: Path = TEMPLATE
) -> str:
    """Render the card for a build with `config` (a `BuildConfig`) and its `publish.BuildCounts`.

    `data_files` maps each config written (`default`, `dependencies`) to its parquet path pattern; `config_yaml` is
    the build configuration as written to `build_config.yaml`.
    """
    from .models import is_embedded

    sources = [config.roots, *config.corpus]
    license_id = EMBEDDED_LICENSE if all(is_embedded(s) for s in sources) else config.dataset_license
    configs = [
        {"config_name": name, "data_files": [{"split": "train", "path": pattern}]}
        for name, pattern in data_files.items()
    ]
    pretty_name = config.pretty_name or f"EntropyLong {config.max_seq_length // 1024}K"
    card_data = DatasetCardData(
        language="en",
        license=license_id,
        pretty_name=pretty_name,
        size_categories=_size_category(counts.sequences),
        task_categories=["text-generation"],
        tags=["long-context", "entropylong", "pretraining"],
        configs=configs,
    )
    card = DatasetCard.from_template(
        card_data,
        template_path=str(template_path),
        pretty_name=pretty_name,
        repo_id=config.hub_repo_id or config.output_dir,
        config=config,
        counts=counts,
        license=license_id,
        config_yaml=config_yaml,
    )
    return str(card)
