"""Shared fixtures and markers: `slow` (real embedded models end to end), `require_gpu` (skipped without CUDA).

The Hub is switched off before anything imports huggingface_hub (it reads the setting once, at import): the
package modules are imported inside the fixtures.
"""

import hashlib
import json
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "require_gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def docs_file(tmp_path_factory):
    """The crafted corpus as JSON lines, named after its content."""
    from builds import DOCS

    content = "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in DOCS)
    digest = hashlib.sha1(content.encode()).hexdigest()[:12]
    path = tmp_path_factory.mktemp("data") / f"docs-{digest}.jsonl"
    path.write_text(content, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def demo_build(docs_file, tmp_path_factory):
    """One reference build of the crafted corpus (one process): its folder and counts."""
    from builds import small_config

    from hf_entropylong.builder import build

    output_dir = tmp_path_factory.mktemp("build") / "out"
    counts = build(small_config(docs_file, output_dir))
    return output_dir, counts


@pytest.fixture(scope="session")
def versions(demo_build):
    """The reference build's tables (a previous dataset) and other tables (a new one), with its counts, ready to
    publish."""
    import datasets

    output_dir, counts = demo_build
    old = [
        datasets.Dataset.from_parquet([str(p) for p in sorted((output_dir / name).glob("*.parquet"))])
        for name in ("default", "dependencies")
    ]
    new = [old[0].map(lambda row: {"text": row["text"].upper()}), old[1].select(range(len(old[1]) - 1))]
    return old, new, counts
