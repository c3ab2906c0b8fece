"""The dataset card, the published files and the Hub push: true metadata, stable names, what would be uploaded."""

import dataclasses
import json
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest
import yaml
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, DatasetCard, HfApi, hf_api

import hf_entropylong
from hf_entropylong import cli, demo_config
from hf_entropylong.builder import BuildConfig
from hf_entropylong.publish import writer as publish
from hf_entropylong.publish.card import hub_source_datasets, render_dataset_card
from hf_entropylong.publish.counts import BuildCounts
from hf_entropylong.publish.writer import OutputSettings, push_folder, write_dataset

EMBEDDED = dict(roots="embedded:wiki-summaries", corpus=["embedded:wiki-summaries"])


def make_counts(**seconds) -> BuildCounts:
    return BuildCounts(
        method="entropylong", roots_read=10, roots_empty=0, roots=4,
        roots_by_status={"ok": 3, "no_verified_context": 1},
        corpus_documents=10, corpus_empty=0, high_entropy_positions=9, candidates_excluded_self=2,
        candidates_excluded_near_duplicate=1, candidates_tried=12, distinct_candidates_tried=8,
        verified_dependencies=5, verified_contexts=4, mean_delta_i=0.61, contexts_trimmed_for_length=0,
        units=3, units_left_over=0, sequences=2, tokens=64, padding_tokens=3, mean_dependency_distance=41.5,
        seconds=seconds,
    )  # fmt: skip


def tables(text_size: int = 8) -> tuple[datasets.Dataset, datasets.Dataset]:
    packed = datasets.Dataset.from_dict(
        {"input_ids": [[1] * 32, [2] * 32], "seq_lengths": [[32], [29, 3]], "text": ["a" * text_size] * 2}
    )
    dependencies = datasets.Dataset.from_dict({"root_id": ["r1", "r2"], "status": ["ok", "ok"]})
    return packed, dependencies


def card_metadata(text: str) -> dict:
    return DatasetCard(text).data.to_dict()


def test_card_licence_follows_the_sources(tmp_path):
    embedded = BuildConfig(**EMBEDDED, output_dir=str(tmp_path))
    card = render_dataset_card(embedded, make_counts(), {"default": "default/*.parquet"}, "")
    assert card_metadata(card)["license"] == "cc-by-sa-4.0" and "source_datasets" not in card_metadata(card)
    assert "licence of the embedded Wikipedia summaries" in card

    hub = BuildConfig(
        roots="HuggingFaceFW/fineweb-edu::sample-10BT",
        corpus=["HuggingFaceFW/fineweb-edu::sample-10BT", "HuggingFaceTB/cosmopedia"],
        output_dir=str(tmp_path),
    )
    assert hub_source_datasets(hub) == ["HuggingFaceFW/fineweb-edu", "HuggingFaceTB/cosmopedia"]
    metadata = card_metadata(render_dataset_card(hub, make_counts(), {"default": "default/*.parquet"}, ""))
    assert metadata["license"] == "odc-by"
    assert metadata["source_datasets"] == [
        "extended|HuggingFaceFW/fineweb-edu",
        "extended|HuggingFaceTB/cosmopedia",
    ]


def test_local_sources_are_not_hub_datasets_and_the_licence_is_the_declared_one(tmp_path):
    local = tmp_path / "corpus.jsonl"
    local.write_text('{"text": "x"}\n')
    config = BuildConfig(
        roots=str(local), corpus=[str(local)], dataset_license="cc-by-sa-4.0", output_dir="o"
    )
    card = render_dataset_card(config, make_counts(), {"default": "default/*.parquet"}, "")
    assert hub_source_datasets(config) == [] and card_metadata(card)["license"] == "cc-by-sa-4.0"
    assert "as declared with `dataset_license`" in card


def test_written_dataset_agrees_with_its_card_and_keeps_names_and_timings(tmp_path):
    config = BuildConfig(**EMBEDDED, output_dir=str(tmp_path), dataset_license="odc-by")
    first, rerun = tmp_path / "first", tmp_path / "rerun"
    write_dataset(first, *tables(), make_counts(entropy=108.4, verify=114.4), config)
    write_dataset(
        rerun, *tables(), make_counts(entropy=0.1, verify=0.1), config
    )  # new fingerprints, same data

    names = sorted(p.relative_to(first).as_posix() for p in first.rglob("*.parquet"))
    assert names == sorted(p.relative_to(rerun).as_posix() for p in rerun.rglob("*.parquet"))
    written = yaml.safe_load((first / "build_config.yaml").read_text())
    metadata = card_metadata((first / "README.md").read_text())
    assert written["dataset_license"] == metadata["license"] == "cc-by-sa-4.0"
    assert {c["data_files"][0]["path"] for c in metadata["configs"]} == {
        name.rsplit("-", 3)[0] + "-*.parquet" for name in names
    }
    assert datasets.load_dataset(str(first), split="train")["seq_lengths"] == [[32], [29, 3]]

    card = (rerun / "README.md").read_text()
    assert "entropy 108.4, verify 114.4 (the build that computed this data" in card and "took 0.2 s" in card
    assert json.loads((rerun / "stats.json").read_text())["seconds"] == {"entropy": 0.1, "verify": 0.1}

    write_dataset(tmp_path / "other", *tables(text_size=9), make_counts(entropy=1.0), config)
    assert not (tmp_path / "other/default" / names[0].split("/")[1]).exists()  # other data, other names


def test_row_groups_stay_under_the_viewer_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(publish, "ROW_GROUP_BYTES", 150_000)
    packed = datasets.Dataset.from_dict(
        {"input_ids": [list(range(4096))] * 12, "text": ["word " * 2000] * 12}
    )
    config = BuildConfig(**EMBEDDED, output_dir=str(tmp_path))
    write_dataset(tmp_path / "out", packed, tables()[1], make_counts(), config)
    (shard,) = (tmp_path / "out/default").glob("*.parquet")
    metadata = pq.ParquetFile(shard).metadata
    assert metadata.num_rows == 12 and 1 < metadata.num_row_groups < 12  # rows of ~40 KB in memory
    assert all(metadata.row_group(i).total_byte_size <= 150_000 for i in range(metadata.num_row_groups))
    assert metadata.row_group(0).column(0).has_offset_index  # the page index the viewer reads rows with


class HubStandIn:
    """What `HfApi` would send to the Hub: the repo created, the files added and deleted (no network)."""

    def __init__(self, remote_files: list[str]):
        self.remote_files, self.repos, self.commits, self.validated = remote_files, [], [], []

    def install(self, monkeypatch) -> None:
        stand_in = self

        def create_repo(api, repo_id, **kwargs):
            stand_in.repos.append((repo_id, kwargs))
            return hf_api.RepoUrl(f"https://huggingface.co/datasets/{repo_id}")

        def validate_yaml(api, content, repo_type=None, token=None):  # the Hub's metadata check, offline
            stand_in.validated.append((repo_type, DatasetCard(content, ignore_metadata_errors=False).data))

        def create_commit(api, repo_id, operations, **kwargs):
            stand_in.commits.append((repo_id, kwargs["repo_type"], operations))

        monkeypatch.setattr(HfApi, "create_repo", create_repo)
        monkeypatch.setattr(HfApi, "list_repo_files", lambda api, **kwargs: list(stand_in.remote_files))
        monkeypatch.setattr(HfApi, "create_commit", create_commit)
        monkeypatch.setattr(HfApi, "_validate_yaml", validate_yaml)
        monkeypatch.setattr(
            hf_api, "is_xet_available", lambda: False
        )  # the single-commit path, recorded here


def test_push_sends_only_the_published_dataset(tmp_path, monkeypatch):
    config = BuildConfig(**EMBEDDED, output_dir=str(tmp_path))
    output_dir = tmp_path / "out"
    output_dir.mkdir()
    write_dataset(output_dir, *tables(), make_counts(), config)
    written = sorted(p.relative_to(output_dir).as_posix() for p in output_dir.rglob("*") if p.is_file())
    publish.write_marker(output_dir, publish.Marker(written))  # as `publish` records them
    (output_dir / ".cache").mkdir(exist_ok=True)
    (output_dir / ".cache/entropy-0-00000-of-00001.arrow").write_text("cache")
    (output_dir / "notes.txt").write_text("the user's")
    stale = "default/train-0123456789ab-00000-of-00001.parquet"
    hub = HubStandIn(remote_files=[stale, "plots/old.png", "README.md", ".gitattributes"])
    hub.install(monkeypatch)

    settings = OutputSettings(push_to_hub=True, hub_repo_id="org/entropylong", hub_private=True)
    assert push_folder(output_dir, settings) == "https://huggingface.co/datasets/org/entropylong"
    assert hub.repos == [("org/entropylong", {"repo_type": "dataset", "private": True, "exist_ok": True})]
    ((repo_id, repo_type, operations),) = hub.commits
    assert (repo_id, repo_type) == ("org/entropylong", "dataset")
    added = {op.path_in_repo for op in operations if isinstance(op, CommitOperationAdd)}
    deleted = {op.path_in_repo for op in operations if isinstance(op, CommitOperationDelete)}
    published = {p.relative_to(output_dir).as_posix() for p in output_dir.glob("*/*.parquet")}
    plots = {p.relative_to(output_dir).as_posix() for p in output_dir.glob("plots/*.png")}
    assert plots and added == {"README.md", "build_config.yaml", "stats.json", *published, *plots}
    # the previous build's shard and plot go; the card is replaced, .gitattributes kept
    assert deleted == {stale, "plots/old.png"}
    ((repo_type, card_data),) = hub.validated
    assert repo_type == "dataset" and card_data.license == "cc-by-sa-4.0"


def test_push_needs_a_repo_id():
    with pytest.raises(ValueError, match="hub_repo_id"):
        dataclasses.replace(OutputSettings(), push_to_hub=True)


def test_demo_config_is_the_demo_recipe():
    recipe = yaml.safe_load((Path(__file__).resolve().parents[1] / "recipes/build/demo.yaml").read_text())
    assert demo_config() == BuildConfig(**recipe)
    assert demo_config(num_roots=5).num_roots == 5


def test_version_and_task_folder_from_any_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cli.main(["--version"])
    assert capsys.readouterr().out == f"hf-entropylong {hf_entropylong.__version__}\n"
    cli.main(["eval", "tasks-path"])
    tasks = Path(capsys.readouterr().out.strip())
    assert tasks.is_absolute() and (tasks / "entropylong_ruler_synthetic.yaml").is_file()


def test_card_states_how_much_of_each_document_the_embedder_reads(tmp_path):
    counts, files = make_counts(), {"default": "default/*.parquet"}
    card = render_dataset_card(BuildConfig(**EMBEDDED, embedder_max_seq_length=128), counts, files, "")
    assert "The embedder reads the first 128 tokens of each corpus document" in card
    card = render_dataset_card(BuildConfig(**EMBEDDED), counts, files, "")
    assert "tokens up to its own limit (`max_seq_length` of the model)" in card


@pytest.mark.parametrize(
    "method, says",
    [
        ("entropylong", ["model-verified long-range dependencies", "| verified dependencies (ΔI ≥ 0.4) |"]),
        (
            "noverify",
            [
                "NoVerify ablation",
                "**without\nverification**",
                "pairs placed, not verified",
                "each unit is its own attention span",
            ],
        ),
        ("concat", ["drawn at random", "pairs placed, not verified", "**one attention span**"]),
        (
            "quest",
            [
                "**keyword groups**",
                "RAKE's over each document's own text",
                "Quest as its authors compare it",
                "the documents that fill 4 rows",
                "**one attention span**",
            ],
        ),
        (
            "nextlong",
            [
                "NExtLong (Gao et al. 2025)",
                "hard-negative distractors",
                "chunk, negatives, chunk",
                "a chunk-level index",
                "**one attention span**",
            ],
        ),
    ],
)
def test_the_card_describes_the_method_that_built_the_data(method, says, tmp_path):
    config = BuildConfig(**EMBEDDED, method=method, output_dir=str(tmp_path))
    card = render_dataset_card(config, make_counts(), {"default": "default/*.parquet"}, "")
    for text in says:
        assert text in card, text
    assert ("model-verified" in card) == (method == "entropylong")
    assert ("baseline" in card_metadata(card)["tags"]) == (method != "entropylong")


def test_quest_is_named_quest_only_with_a_query_model(tmp_path):
    counts, files = make_counts(), {"default": "default/*.parquet"}
    offline = render_dataset_card(
        BuildConfig(**EMBEDDED, method="quest", output_dir=str(tmp_path)), counts, files, ""
    )
    assert (
        card_metadata(offline)["pretty_name"] == "keyword groups baseline 128K"
        and "Quest (Gao" not in offline
    )
    config = BuildConfig(
        **EMBEDDED, method="quest", quest_query_model="doc2query/t5", output_dir=str(tmp_path)
    )
    card = render_dataset_card(config, counts, files, "")
    assert card_metadata(card)["pretty_name"] == "quest baseline 128K" and "Quest (Gao et al. 2024)" in card
    assert "`doc2query/t5` predicts 5\nqueries per document" in card and "keyword groups" not in card


def test_the_stricter_criterion_is_named_beside_the_verified_count(tmp_path):
    config = BuildConfig(**EMBEDDED, verify_criterion="entropy_and_target", output_dir=str(tmp_path))
    card = render_dataset_card(config, make_counts(), {"default": "default/*.parquet"}, "")
    assert "| verified dependencies (ΔI ≥ 0.4 and p(token) rises) |" in card
