"""The small crafted corpus of the end-to-end build tests, the embedded settings they build it with, and how
their tables are compared."""

import json
from pathlib import Path

import pytest
import yaml
from datasets import load_dataset

from hf_entropylong.builder import BuildConfig

DOCS = [
    (
        "velmora",
        "The Velmora Accord was signed in 1847 by the merchant Tobias Grennick and the harbour master of "
        "Calder Bay. Under the accord every ship entering Calder Bay paid a toll of nine silver crowns, and Grennick "
        "kept the ledger of tolls in his counting house on Wharf Street until his death in 1869.",
    ),
    (
        "grennick",
        "Tobias Grennick (1801-1869) was a merchant of Calder Bay, remembered for the Velmora Accord, which he "
        "signed with the harbour master in 1847. The accord set a toll of nine silver crowns on every ship; Grennick kept "
        "the ledger in his counting house on Wharf Street.",
    ),
    (
        "velmora-copy",
        "The Velmora Accord was signed in 1847 by the merchant Tobias Grennick and the harbour master of "
        "Calder Bay. Under the accord every ship entering Calder Bay paid a toll of nine silver crowns, and Grennick "
        "kept the ledger of tolls in his counting house on Wharf Street until his death in 1870.",
    ),
    (
        "volcano",
        "A volcano is a rupture in the crust of a planet that allows hot lava, volcanic ash and gases to escape "
        "from a magma chamber below the surface. Volcanoes are often found where tectonic plates diverge or converge.",
    ),
    (
        "violin",
        "The violin is a wooden string instrument in the violin family. It is the smallest and highest-pitched "
        "instrument in regular use, played with a bow drawn across its four strings tuned in perfect fifths.",
    ),
    (
        "photosynthesis",
        "Photosynthesis is the process by which plants, algae and some bacteria convert light energy into "
        "chemical energy stored in sugars, releasing oxygen as a by-product of splitting water molecules.",
    ),
    ("short", "Hello."),
    ("long", "The river flows past the old mill at the edge of the village. " * 90),  # > 1,024 tokens
]


def small_config(docs_file, output_dir, **overrides) -> BuildConfig:
    settings = dict(
        roots=str(docs_file),
        num_roots=None,
        corpus=[str(docs_file)],
        lm="embedded:SmolLM2-135M-Instruct",
        lm_dtype="float32",
        embedder="embedded:all-MiniLM-L6-v2",
        top_k=2,
        max_seq_length=1024,
        min_row_fill=0.2,  # a handful of short units fill a fraction of a row
        shard_size=3,
        output_dir=str(output_dir),
    )
    return BuildConfig(**{**settings, **overrides})


def rebuild_settings(folder) -> dict:
    """The settings of `folder/build_config.yaml`, its local paths (written relative to the folder) made absolute."""
    settings = yaml.safe_load((folder / "build_config.yaml").read_text())

    def local(value):
        return str((folder / value).resolve()) if (folder / value).exists() else value

    return {**settings, "roots": local(settings["roots"]), "corpus": [local(c) for c in settings["corpus"]]}


def draw_two_plots(folder) -> list[tuple[str, str]]:
    """A stand-in for `write_build_plots` where only the files matter (the real plots take seconds each)."""
    (folder / "plots").mkdir(exist_ok=True)
    for name in ("a.png", "b.png"):
        (folder / "plots" / name).write_bytes(folder.name.encode())
    return [("plots/a.png", "a"), ("plots/b.png", "b")]


# Floats move with the library versions and the thread count (benchmarks/float_spread.py; BENCHMARKS.md, "Locked and
# latest versions"). Measured on a 2-core machine: transformers 5.23 vs 5.25, identical; 1 vs 2 threads, 6.4e-5
# relative (delta_i) and 2.9e-6 absolute (entropy_with_context); a fresh clone on another machine of that kind,
# 1.3e-4 relative and 1.1e-5 absolute (target_logprob_with_context). The tolerance is about 8x the largest; ids,
# statuses, decisions (kept or not) and counts stay exact, so a decision that flips still fails.
FLOAT_REL, FLOAT_ABS = 1e-3, 1e-4


def assert_close(got, expected, where: str) -> None:
    """Equal tables: the same structure, ids, decisions and counts; floats within `FLOAT_REL`/`FLOAT_ABS`, NaN (a
    baseline's missing value) equal to NaN."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and got.keys() == expected.keys(), where
        for key in expected:
            assert_close(got[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), where
        for i, (a, b) in enumerate(zip(got, expected, strict=True)):
            assert_close(a, b, f"{where}[{i}]")
    elif isinstance(expected, float):
        assert got == pytest.approx(expected, rel=FLOAT_REL, abs=FLOAT_ABS, nan_ok=True), where
    else:
        assert got == expected, where


def published_tables(output_dir: Path) -> dict[str, list[dict]]:
    """Both published tables of a build, rows in the order of their root ids (a row's order is not part of it)."""
    tables = {}
    for name in ("default", "dependencies"):
        rows = load_dataset(str(output_dir), name, split="train").to_list()
        tables[name] = sorted(
            rows, key=lambda row: json.dumps(row.get("root_id", row.get("root_ids")), sort_keys=True)
        )
    return tables


def assert_same_dataset(output_dir: Path, reference_dir: Path) -> None:
    """The published tables of `output_dir` equal those of `reference_dir` (`assert_close`)."""
    for name in ("default", "dependencies"):
        got = load_dataset(str(output_dir), name, split="train").to_list()
        assert_close(got, load_dataset(str(reference_dir), name, split="train").to_list(), name)


def writers(cache: Path, stage: str) -> dict[int, int]:
    """The rank (or datatrove task) that computed each shard of `stage` (recorded beside each shard's cache)."""
    return {
        int(path.name.split("-")[-3]): json.loads(path.read_text())["rank"]
        for path in cache.glob(f"{stage}-*.arrow.json")
    }
