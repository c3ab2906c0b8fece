"""`hf-entropylong report` and the published plots, on small builds written by `publish.write_dataset` from
synthetic tables with the builder's own column types: the page shows the files' numbers and roots."""

import json
import math
import random
import re
import struct
from html.parser import HTMLParser
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard

from hf_entropylong import cli, report
from hf_entropylong.builder import BuildConfig
from hf_entropylong.builder.runner import COLUMNS, statuses_of
from hf_entropylong.methods import stages_of
from hf_entropylong.publish import plots
from hf_entropylong.publish.counts import BuildCounts
from hf_entropylong.publish.packing import pack_units
from hf_entropylong.publish.writer import write_dataset
from hf_entropylong.sources import SourceCounts

WORDS = "river mill harbour accord ledger crown merchant volcano magma violin string bow plant light sugar".split()
DEPENDENCY_FEATURES = datasets.Features(
    {
        "root_id": datasets.Value("string"),
        "root_text": datasets.Value("string"),
        **{k: v for k, v in COLUMNS.items() if k not in ("unit_input_ids", "retrieved")},
    }
)
NAN = float("nan")


def synthetic_root(rng: random.Random, index: int, method: str, num_words: int) -> dict:
    """One row of the `dependencies` table: positions, candidates and a unit as `method` would record them."""
    words = [rng.choice(WORDS) for _ in range(num_words)]
    starts = np.cumsum([0] + [len(w) + 1 for w in words[:-1]]).tolist()
    text = " ".join(words)
    baseline = method == "quest"
    positions, candidates = [], []
    for word in sorted(rng.sample(range(4, num_words), k=rng.choice([0, 1, 2, 3]))):
        entropy = NAN if baseline else rng.uniform(4.0, 9.0)
        positions.append({
            "token_index": word + 1, "char_start": starts[word], "char_end": starts[word] + len(words[word]),
            "token": words[word] if baseline else " " + words[word], "entropy": entropy, "target_logprob": NAN,
            "query": " ".join(words[max(0, word - 16): word + 17]),
        })  # fmt: skip
        for rank in range(2):
            delta = NAN if baseline else round(rng.uniform(-0.3, 0.95), 3)
            candidates.append({
                "token_index": word + 1, "corpus_index": 100 + rng.randrange(50), "corpus_id": f"doc-{rng.randrange(50)}",
                "similarity": rng.uniform(0.3, 0.9), "entropy_with_context": NAN if baseline else entropy * (1 - delta),
                "target_logprob_with_context": NAN, "delta_i": delta,
                "kept": rank == 0 if baseline else delta >= 0.4,
            })  # fmt: skip
    kept = [c for c in candidates if c["kept"]]
    contexts = {}
    for c in kept:
        entry = contexts.setdefault(c["corpus_id"], {"corpus_index": c["corpus_index"], "corpus_id": c["corpus_id"],
                                                     "delta_i": c["delta_i"], "token_indices": [],
                                                     "verified": not baseline})  # fmt: skip
        entry["token_indices"].append(c["token_index"])
        entry["delta_i"] = max(entry["delta_i"], c["delta_i"]) if not baseline else NAN
    if kept and num_words < 1000:
        status = "ok"
    elif baseline:
        status = "no_candidate"
    else:
        status = "no_verified_context" if positions else "no_high_entropy_position"
    lengths = [rng.randrange(10, 150) for _ in contexts] if status == "ok" else []
    histogram = np.bincount(np.asarray([rng.randrange(48) for _ in range(num_words)]), minlength=48).tolist()
    return {
        "root_id": f"{method}-root-{index:03d}", "root_text": text, "num_tokens": num_words + 1,
        "entropy_mean": NAN if baseline else 2.5, "entropy_std": NAN if baseline else 1.5,
        "entropy_histogram": [] if baseline else histogram, "positions": positions, "status": status,
        "num_excluded_self": 1, "num_excluded_near_duplicate": 0, "candidates": candidates,
        "contexts": list(contexts.values()) if status == "ok" else [],
        "unit_context_ids": list(contexts) if status == "ok" else [], "unit_context_lengths": lengths,
        "num_unit_tokens": sum(lengths) + num_words + 1 if status == "ok" else 0, "num_contexts_trimmed": 0,
        "dependency_distances": [rng.randrange(0, 400) for _ in kept] if status == "ok" else [],
    }  # fmt: skip


def publish_synthetic(folder: Path, method: str, num_roots: int, seed: int) -> Path:
    """A published build folder (parquet, stats.json, build_config.yaml, card, plots) of synthetic roots."""
    rng = random.Random(seed)
    lengths = [3000 if i == 1 else rng.randrange(20, 60) for i in range(num_roots)]  # root 1: a long text
    rows = [synthetic_root(rng, i, method, num_words) for i, num_words in enumerate(lengths)]
    dependencies = datasets.Dataset.from_list(rows, features=DEPENDENCY_FEATURES)
    units = datasets.Dataset.from_dict({
        "input_ids": [[7] * r["num_unit_tokens"] for r in rows if r["num_unit_tokens"]],
        "root_id": [r["root_id"] for r in rows if r["num_unit_tokens"]],
        "context_ids": [r["unit_context_ids"] for r in rows if r["num_unit_tokens"]],
    })  # fmt: skip
    packed = pack_units(units, max_length=1024, pad_token_id=0, seed=seed)
    packed = packed.add_column("text", ["…"] * len(packed))
    config = BuildConfig(roots="embedded:wiki-summaries", corpus=["embedded:wiki-summaries"], method=method,
                         output_dir=str(folder), max_seq_length=1024, epsilon=0.4)  # fmt: skip
    counts = BuildCounts.from_tables(
        method, statuses_of(stages_of(config.method)), SourceCounts(num_roots, num_roots, 0, "roots"),
        [SourceCounts(50, 50, 0, "corpus")], dependencies, packed, units_left_over=0,
    )  # fmt: skip
    folder.mkdir(parents=True)
    write_dataset(folder, packed, dependencies, counts, config)
    return folder


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    base = tmp_path_factory.mktemp("builds")
    main = publish_synthetic(base / "main", "entropylong", num_roots=30, seed=0)
    return main, publish_synthetic(base / "kw", "quest", num_roots=12, seed=1)


class Page(HTMLParser):
    """What the tests read of the report: tables by id (rows by data-key), JSON scripts by id, images, notes."""

    def __init__(self, html: str):
        super().__init__()
        self.tables, self.scripts, self.images, self.notes = {}, {}, [], []
        self._table = self._row = self._cell = self._script = self._note = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("id"), {})
        elif tag == "tr" and self._table is not None:
            self._row = self._table.setdefault(attrs.get("data-key"), [])
        elif tag == "td" and self._row is not None:
            self._cell = []
        elif tag == "script" and attrs.get("type") == "application/json":
            self._script = attrs["id"]
        elif tag == "img":
            self.images.append(attrs["src"])
        elif tag == "p" and "sample-note" in attrs.get("class", ""):
            self._note = []

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = self._row = None
        elif tag == "script":
            self._script = None
        elif tag == "p" and self._note is not None:
            self.notes.append(" ".join("".join(self._note).split()))
            self._note = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._script is not None:
            self.scripts[self._script] = self.scripts.get(self._script, "") + data
        if self._note is not None:
            self._note.append(data)


def shown(text: str) -> float | str | None:
    if text == "—":
        return None
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return text


def read_rows(folder: Path, table: str) -> list[dict]:
    paths = sorted((folder / table).glob("*.parquet"))
    return [row for path in paths for row in pq.read_table(path).to_pylist()]


def counts_from_files(folder: Path) -> dict:
    """The headline numbers recomputed from the parquet files alone (not from stats.json)."""
    roots, packed = read_rows(folder, "dependencies"), read_rows(folder, "default")
    kept = [c for r in roots for c in r["candidates"] if c["kept"]]
    deltas = [c["delta_i"] for c in kept if not math.isnan(c["delta_i"])]
    distances = [d for r in roots if r["num_unit_tokens"] for d in r["dependency_distances"]]
    return {
        "roots": len(roots),
        "roots_ok": sum(r["status"] == "ok" for r in roots),
        "high_entropy_positions": sum(not math.isnan(p["entropy"]) for r in roots for p in r["positions"]),
        "candidates_tried": sum(len(r["candidates"]) for r in roots),
        "verified_dependencies": len(kept),
        "verified_contexts": sum(len(r["contexts"]) for r in roots),
        "mean_delta_i": round(float(np.mean(deltas)), 4) if deltas else None,
        "units": sum(len(row["root_ids"]) for row in packed),
        "sequences": len(packed),
        "tokens": sum(len(row["input_ids"]) for row in packed),
        "padding_tokens": sum(row["num_padding_tokens"] for row in packed),
        "mean_dependency_distance": round(float(np.mean(distances)), 1) if distances else None,
    }


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{path} is not a PNG"
    assert data[-8:-4] == b"IEND", f"{path} is truncated"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def page(builds, tmp_path_factory):
    report_dir = tmp_path_factory.mktemp("report") / "out"
    index = report.main([str(builds[0]), str(builds[1]), "--report_dir", str(report_dir)])
    return report_dir, Page(index.read_text(encoding="utf-8"))


def test_headline_shows_each_builds_counts_from_its_files(builds, page):
    _, parsed = page
    headline = parsed.tables["headline"]
    for column, folder in enumerate(builds):
        stats = json.loads((folder / "stats.json").read_text())
        from_files = counts_from_files(folder)
        assert from_files["roots_ok"] == stats["roots_by_status"]["ok"]
        for key, value in from_files.items():
            assert shown(headline[key][column]) == pytest.approx(value), key
            if key in stats:
                assert value == pytest.approx(stats[key]), key
    # a quest build without a query model is shown under the name of what it is: keyword groups
    assert [headline["method"][0], headline["method"][1]] == ["entropylong", "keyword groups"]
    assert headline["mean_delta_i"][1] == "—" and headline["high_entropy_positions"][1] == "0"  # a baseline


def test_viewer_embeds_every_root_with_its_positions_and_candidates(builds, page):
    _, parsed = page
    for index, folder in enumerate(builds):
        data = json.loads(parsed.scripts[f"build-data-{index}"])
        rows = read_rows(folder, "dependencies")
        assert data["total"] == len(rows) and [r["id"] for r in data["roots"]] == [r["root_id"] for r in rows]
        for root, row in zip(data["roots"], rows, strict=True):
            assert root["status"] == row["status"] and root["unit"] == row["unit_context_ids"]
            assert [(p["t"], p["s"], p["e"]) for p in root["positions"]] == [
                (p["token_index"], p["char_start"], p["char_end"]) for p in row["positions"]
            ]
            assert [(c["t"], c["id"], c["kept"]) for c in root["candidates"]] == [
                (c["token_index"], c["corpus_id"], c["kept"]) for c in row["candidates"]
            ]
            for c, expected in zip(root["candidates"], row["candidates"], strict=True):
                assert (c["di"] is None) == math.isnan(expected["delta_i"])
                assert c["di"] is None or c["di"] == pytest.approx(expected["delta_i"], abs=1e-4)
            text = row["root_text"]
            for p in row["positions"]:  # every highlighted span is embedded, with the root's own characters
                assert any(
                    start <= p["char_start"] and p["char_end"] <= start + len(piece)
                    and piece[p["char_start"] - start : p["char_end"] - start] == text[p["char_start"] : p["char_end"]]
                    for start, piece in root["text"]
                )  # fmt: skip
            assert all(text[start : start + len(piece)] == piece for start, piece in root["text"])
    long_root = json.loads(parsed.scripts["build-data-0"])["roots"][1]
    assert long_root["chars"] > report.MAX_TEXT_CHARS > sum(len(piece) for _, piece in long_root["text"])


def test_plots_are_pngs_of_the_distributions_and_the_page_shows_them(builds, page):
    report_dir, parsed = page
    names = {path.name for path in (report_dir / "plots").glob("*.png")}
    assert names == {f"{name}.png" for name in plots.PLOT_TITLES}
    for path in (report_dir / "plots").glob("*.png"):
        width, height = png_size(path)
        assert width >= 400 and height >= 200
    assert sorted(parsed.images) == sorted(f"plots/{name}" for name in names)
    # quest records no entropy and computes no ΔI, and its keywords are not high-entropy positions
    quest = plots.read_distributions(builds[1])
    assert quest.entropy is None and len(quest.delta_kept) == 0 and quest.candidates_without_delta > 0
    assert quest.positions_per_root.sum() == 0
    main = plots.read_distributions(builds[0])
    rows = read_rows(builds[0], "dependencies")
    assert main.entropy.sum() == sum(sum(r["entropy_histogram"]) for r in rows)
    assert sorted(main.unit_tokens) == sorted(r["num_unit_tokens"] for r in rows if r["num_unit_tokens"])


def test_viewer_samples_at_most_viewer_roots_deterministically(builds, tmp_path):
    first, again = (
        Page(report.main([str(builds[0]), "--report_dir", str(d), "--viewer_roots", "10"]).read_text())
        for d in (tmp_path / "a", tmp_path / "b")
    )
    ids = [r["id"] for r in json.loads(first.scripts["build-data-0"])["roots"]]
    all_ids = [r["root_id"] for r in read_rows(builds[0], "dependencies")]
    assert len(ids) == 10 and ids == [i for i in all_ids if i in ids]  # a subset, in table order
    assert ids == [r["id"] for r in json.loads(again.scripts["build-data-0"])["roots"]]
    assert "10 of 30 roots embedded" in first.notes[0]


def test_viewer_caps_positions_per_root_and_data_per_build(builds, tmp_path, monkeypatch):
    positions = [{"token_index": t, "char_start": t, "char_end": t + 1, "token": "x", "entropy": float(t % 50),
                  "target_logprob": NAN, "query": "q"} for t in range(300)]  # fmt: skip
    candidates = [{"token_index": t, "corpus_id": f"d{t}", "similarity": 0.5, "entropy_with_context": 1.0,
                   "delta_i": 0.5 if t == 7 else 0.1, "kept": t == 7} for t in (*range(300), -1)]  # fmt: skip
    row = {"root_id": "r", "status": "ok", "root_text": "x" * 400, "positions": positions,
           "candidates": candidates, "contexts": [], "unit_context_ids": []}  # fmt: skip
    root = report.viewer_root(row, max_positions=10)
    shown = [p["t"] for p in root["positions"]]  # the kept one, then the highest entropies (49, 48), in order
    assert shown == sorted([7, 49, 99, 149, 199, 249, 299, 48, 98, 148])
    assert [c["t"] for c in root["candidates"]] == [*shown, -1]  # and the candidate tied to no position
    assert (root["positions_total"], root["candidates_total"]) == (300, 301)

    monkeypatch.setattr(report, "MAX_VIEWER_BYTES", 6_000)
    page = Page(report.main([str(builds[0]), "--report_dir", str(tmp_path / "light")]).read_text())
    roots = json.loads(page.scripts["build-data-0"])["roots"]
    assert 0 < len(roots) < 30 and sum(len(json.dumps(r, ensure_ascii=False)) for r in roots) <= 6_000
    assert f"{len(roots)} of 30 roots embedded" in page.notes[0] and "fewer than that" in page.notes[0]


def test_published_folder_has_the_plots_and_the_card_shows_them_with_the_headline(builds):
    folder = builds[0]
    card = (folder / "README.md").read_text()
    linked = re.findall(r"!\[[^\]]+\]\((plots/[^)]+\.png)\)", card)
    written = sorted(p.relative_to(folder).as_posix() for p in folder.glob("plots/*.png"))
    assert linked and sorted(linked) == written
    for path in linked:
        png_size(folder / path)
    stats = json.loads((folder / "stats.json").read_text())
    glance = card.split("## At a glance")[1].split("##")[0].strip().splitlines()
    header, _, values = ([cell.strip() for cell in line.split("|")[1:-1]] for line in glance)
    row = dict(zip(header, values, strict=True))
    assert shown(row["kept dependencies"]) == stats["verified_dependencies"]
    assert shown(row["tokens"]) == stats["tokens"] and row["method"] == "entropylong"
    assert DatasetCard(card).data.to_dict()["license"] == "cc-by-sa-4.0"  # the YAML header still parses


def run_cli(argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    return exit_info.value.code, capsys.readouterr().err


def test_cli_errors_name_the_folder_in_one_line(builds, tmp_path, capsys):
    missing = tmp_path / "no-such-build"
    code, err = run_cli(["report", str(missing)], capsys)
    assert code == 2 and str(missing) in err and "does not exist" in err
    assert len(err.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    code, err = run_cli(["report", str(tmp_path / "empty")], capsys)
    assert code == 2 and "is not a published hf_entropylong build" in err and "stats.json" in err

    lacking = tmp_path / "old"  # a build whose dependencies table lacks a column the report reads
    for name in ("stats.json", "build_config.yaml"):
        (lacking / name).parent.mkdir(exist_ok=True)
        (lacking / name).write_bytes((builds[0] / name).read_bytes())
    for table in ("default", "dependencies"):
        (lacking / table).mkdir()
        (path,) = (builds[0] / table).glob("*.parquet")
        data = pq.read_table(path)
        data = data.drop(["candidates"]) if table == "dependencies" else data
        pq.write_table(data, lacking / table / path.name)
    code, err = run_cli(["report", str(lacking)], capsys)
    assert code == 2 and str(lacking) in err and "candidates" in err and "rebuild" in err


def test_report_never_overwrites_a_file_it_did_not_write(builds, tmp_path, capsys):
    theirs = tmp_path / "notes"
    theirs.mkdir()
    (theirs / "index.html").write_text("mine")
    code, err = run_cli(["report", str(builds[0]), "--report_dir", str(theirs)], capsys)
    assert code == 2 and "holds no report" in err and (theirs / "index.html").read_text() == "mine"

    ours = tmp_path / "ours"
    report.main([str(builds[0]), str(builds[1]), "--report_dir", str(ours)])
    (ours / "plots" / "stale.png").write_bytes(b"")  # not ours: kept
    # a second report rewrites its own files, and drops those of the first that it does not write
    report.main([str(builds[1]), "--report_dir", str(ours)])
    assert (ours / "plots" / "stale.png").exists() and not (ours / "plots" / "entropy.png").exists()
    assert json.loads(parsed_script(ours))["label"] == "keyword groups · kw"


def parsed_script(report_dir: Path) -> str:
    return Page((report_dir / "index.html").read_text()).scripts["build-data-0"]


def test_default_report_dir_is_inside_the_first_build(builds):
    index = report.main([str(builds[1])])
    assert index == builds[1] / "report" / "index.html"
    assert (builds[1] / "report" / report.REPORT_MARKER).is_file()


def _as_schema_version_1(build: Path, folder: Path) -> Path:
    """A copy of `build` as a build of schema version 1 writes it: `verified_contexts` without `verified`, the
    candidates' decision named `verified`, no `schema_version` in stats.json."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    shutil.copytree(build, folder)
    for path in plots.table_files(folder, "dependencies"):
        table = pq.read_table(path)
        rows = table.to_pylist()
        for row in rows:
            for candidate in row["candidates"]:
                candidate["verified"] = candidate.pop("kept")
            row["verified_contexts"] = [
                {k: v for k, v in c.items() if k != "verified"} for c in row.pop("contexts")
            ]
        pq.write_table(pa.Table.from_pylist(rows), path)
    stats = json.loads((folder / "stats.json").read_text())
    del stats["schema_version"]
    (folder / "stats.json").write_text(json.dumps(stats))
    return folder


def test_a_build_of_schema_version_1_reads_as_the_current_one(builds, tmp_path):
    current = builds[0]
    old = _as_schema_version_1(current, tmp_path / "old")
    report.check_build(old)
    assert report.viewer_roots(old, limit=100) == report.viewer_roots(current, limit=100)
    got, expected = plots.read_distributions(old), plots.read_distributions(current)
    assert len(expected.delta_kept) > 0
    np.testing.assert_array_equal(got.delta_kept, expected.delta_kept)
    np.testing.assert_array_equal(got.delta_rejected, expected.delta_rejected)
