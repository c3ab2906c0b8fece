"""The ablation and baselines: their pieces on their own, then a build of each on the crafted corpus."""

import dataclasses
import itertools
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from builds import DOCS, small_config
from datasets import load_dataset

from hf_entropylong.builder import BuildConfig, build
from hf_entropylong.builder.runner import statuses_of
from hf_entropylong.methods import METHODS, stages_of
from hf_entropylong.methods.concat import RANDOM_STAGE
from hf_entropylong.methods.nextlong import INTERLEAVE_STAGE, meta_chunks
from hf_entropylong.methods.noverify import top_one
from hf_entropylong.methods.quest import KEYWORD_STAGE, rake_keywords
from hf_entropylong.stages.units import dependency_distances

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "build"


def test_rake_scores_phrases_by_degree_over_frequency():
    keywords = dict(rake_keywords("The merchant kept the toll ledger. The ledger was lost in the fire.", 10))
    # "toll ledger": toll 2/1 + ledger 3/2 (in two phrases, degree 3); "lost": 1; stop words never appear.
    assert keywords["toll ledger"] == pytest.approx(3.5)
    assert keywords["ledger"] == pytest.approx(1.5) and keywords["lost"] == 1.0
    assert not {"the", "was", "in"} & {word for phrase in keywords for word in phrase.split()}
    assert list(keywords)[:2] == ["merchant kept", "toll ledger"] and keywords["merchant kept"] == 4.0


def test_meta_chunks_cover_the_text_within_the_limit():
    text = "First line is short.\nSecond line has two sentences. Here is the other one.\n" + "word " * 80
    chunks = meta_chunks(text, 60)
    assert all(end - start <= 60 for start, end in chunks)
    assert chunks[0][0] == 0 and all(a[1] <= b[0] for a, b in itertools.pairwise(chunks))
    covered = " ".join(text[start:end] for start, end in chunks)
    assert covered.split() == text.split()  # every word once, in order
    # pieces (lines, then sentences of a long line, then words) are grouped greedily up to the limit
    assert text[slice(*chunks[0])] == "First line is short.\nSecond line has two sentences. "
    assert text[chunks[1][0] :].startswith("Here is the other one.")
    assert meta_chunks("One line only.", 2048) == [(0, 14)]


def test_dependency_distances_count_the_tokens_in_between():
    # unit: [A (5 tokens); B (3 tokens); root]; A serves root positions 2 and 7, B position 4.
    assert dependency_distances([5, 3], [[2, 7], [4]]) == [3 + 2, 3 + 7, 0 + 4]


def test_noverify_keeps_the_best_retrieved_document_of_each_position():
    hit = lambda p, row, s: {"token_index": p, "corpus_index": row, "corpus_id": f"d{row}", "similarity": s}  # noqa: E731
    retrieved = [hit(5, 1, 0.9), hit(5, 2, 0.8), hit(9, 2, 0.7), hit(9, 3, 0.6), hit(12, 1, 0.5)]
    out = top_one({"retrieved": [retrieved]}, None, None)
    assert [c["kept"] for c in out["candidates"][0]] == [True, False, True, False, True]
    assert all(math.isnan(c["delta_i"]) for c in out["candidates"][0])
    assert [(c["corpus_id"], c["token_indices"]) for c in out["contexts"][0]] == [
        ("d1", [5, 12]),
        ("d2", [9]),
    ]


def test_nextlong_interleaves_chunks_and_negatives():
    class Tokenizer:
        eos_token_id = 0

        def __call__(self, texts, return_offsets_mapping):
            words = [text.split() for text in texts]
            return {
                "input_ids": [[len(w) for w in ws] for ws in words],
                "offset_mapping": [[(0, 1)] * len(ws) for ws in words],
            }

    class Corpus:
        def __getitem__(self, rows):
            return {"text": [["aa bb", "ccc", "d e f g"][row] for row in rows]}

    class Inputs:
        tokenizer, max_seq_length, corpus = Tokenizer(), 12, Corpus()

    batch = {
        "text": ["x yy zzz wwww"],  # ids [1, 2, 3, 4] + EOS
        "status": ["ok"],
        "positions": [[{"token_index": 0}, {"token_index": 2}]],
        "contexts": [
            [
                {"corpus_index": 0, "corpus_id": "n0", "token_indices": [0]},
                {"corpus_index": 1, "corpus_id": "n1", "token_indices": [2]},
                {"corpus_index": 2, "corpus_id": "n2", "token_indices": [2]},  # does not fit in 12 tokens
            ]
        ],
    }
    out = INTERLEAVE_STAGE.function(batch, None, Inputs())
    assert out["unit_input_ids"][0] == [1, 2, 2, 2, 0, 3, 4, 0, 3, 0]  # chunk, n0, chunk + EOS, n1
    assert out["unit_context_ids"][0] == ["n0", "n1"] and out["num_contexts_trimmed"][0] == 1
    assert out["dependency_distances"][0] == [3]  # n0's 3 tokens separate the two chunks


def test_every_method_has_a_recipe_that_differs_from_the_demo_only_in_method_and_folders():
    demo = yaml.safe_load((RECIPES / "demo.yaml").read_text())
    assert demo["method"] == "entropylong"
    for method in tuple(METHODS)[1:]:
        recipe = yaml.safe_load((RECIPES / f"demo-{method}.yaml").read_text())
        differing = {key for key in demo.keys() | recipe.keys() if demo.get(key) != recipe.get(key)}
        assert differing == {"method", "output_dir", "cache_dir", "pretty_name"}, method
        assert recipe["method"] == method and recipe["cache_dir"] == f"{demo['output_dir']}/.cache"


def test_an_unknown_method_is_refused():
    with pytest.raises(
        ValueError, match="method must be one of entropylong, noverify, concat, quest, nextlong"
    ):
        BuildConfig(method="random")


@pytest.fixture(scope="module")
def method_builds(docs_file, demo_build, tmp_path_factory):
    """A build of every baseline on the crafted corpus, sharing the reference build's caches."""
    reference_dir, _ = demo_build
    builds = {}
    for method in tuple(METHODS)[1:]:
        config = small_config(
            docs_file,
            tmp_path_factory.mktemp(method) / "out",
            method=method,
            cache_dir=str(reference_dir / ".cache"),
            meta_chunk_chars=120,
            concat_documents=2,
            quest_documents=2,
        )
        builds[method] = (config, build(config))
    return builds


@pytest.mark.slow
@pytest.mark.parametrize("method", tuple(METHODS)[1:])
def test_a_baseline_publishes_the_same_schema_from_the_same_roots(method, method_builds, demo_build):
    reference_dir, _ = demo_build
    config, counts = method_builds[method]
    reference = load_dataset(str(reference_dir), "dependencies", split="train")
    roots = load_dataset(config.output_dir, "dependencies", split="train")
    assert roots.features == reference.features
    assert sorted(roots["root_id"]) == sorted(reference["root_id"])
    assert counts.method == method and set(roots["status"]) <= set(statuses_of(stages_of(config.method)))
    assert (
        load_dataset(config.output_dir, split="train").features
        == load_dataset(str(reference_dir), split="train").features
    )
    by_id = {row["root_id"]: row for row in roots}
    assert by_id["long"]["status"] == "root_too_long" and not by_id["long"]["unit_context_ids"]
    for row in roots:
        placed = [c["corpus_id"] for c in row["contexts"]]
        assert row["root_id"] not in placed  # never the root itself
        if row["root_id"] == "velmora":
            assert "velmora-copy" not in placed  # nor its near-copy
        assert set(row["unit_context_ids"]) <= set(placed)
        assert row["num_unit_tokens"] == 0 or row["num_unit_tokens"] == row["num_tokens"] + sum(
            row["unit_context_lengths"]
        )


@pytest.mark.slow
def test_noverify_places_the_top_retrieved_document_of_every_position(method_builds, demo_build):
    reference_dir, reference_counts = demo_build
    config, counts = method_builds["noverify"]
    reference = {r["root_id"]: r for r in load_dataset(str(reference_dir), "dependencies", split="train")}
    served = 0
    for row in load_dataset(config.output_dir, "dependencies", split="train"):
        assert row["positions"] == reference[row["root_id"]]["positions"]  # the same entropy stage (cached)
        best = {}
        for c in reference[row["root_id"]]["candidates"]:
            if c["similarity"] > best.get(c["token_index"], (None, -2))[1]:
                best[c["token_index"]] = (c["corpus_id"], c["similarity"])
        placed = {p: c["corpus_id"] for c in row["contexts"] for p in c["token_indices"]}
        assert placed == {p: corpus_id for p, (corpus_id, _) in best.items()}
        served += len(best)
    assert counts.high_entropy_positions == reference_counts.high_entropy_positions
    assert counts.verified_dependencies == served > reference_counts.verified_dependencies


@pytest.mark.slow
def test_nextlong_keeps_the_root_in_order_between_its_negatives(method_builds):
    config, counts = method_builds["nextlong"]
    roots = load_dataset(config.output_dir, "dependencies", split="train")
    chunked = [row for row in roots if row["status"] == "ok" and len(row["positions"]) > 1]
    assert chunked and counts.mean_dependency_distance > 0
    for row in chunked:
        spans = [(p["char_start"], p["char_end"]) for p in row["positions"]]
        assert all(end - start <= 120 for start, end in spans)
        assert len(row["dependency_distances"]) == len(spans) - 1
        assert sum(row["dependency_distances"]) <= sum(row["unit_context_lengths"])


@pytest.mark.slow
def test_quest_places_documents_that_share_a_keyword_of_the_root(method_builds, docs_file):
    config, _ = method_builds["quest"]
    texts = dict(DOCS)
    roots = load_dataset(config.output_dir, "dependencies", split="train")
    assert all(row["num_excluded_self"] <= 1 for row in roots)  # the root, once, whatever groups it is in
    grennick = next(row for row in roots if row["root_id"] == "grennick")
    assert grennick["status"] == "ok"
    for context in grennick["contexts"]:
        keyword = next(
            p["query"] for p in grennick["positions"] if p["token_index"] in context["token_indices"]
        )
        assert keyword in texts[context["corpus_id"]].lower() and keyword in grennick["root_text"].lower()


def test_concat_draws_per_root_seeded_documents(docs_file):
    """Pure draw: the same seed gives the same documents; another seed other ones."""
    from hf_entropylong.models import load_tokenizer

    tokenizer = load_tokenizer("embedded:SmolLM2-135M-Instruct")
    corpus = load_dataset("json", data_files=str(docs_file), split="train")

    class Inputs:
        def __init__(self, seed):
            self.tokenizer, self.corpus, self.seed = tokenizer, corpus, seed
            self.max_seq_length, self.same_source = 1024, True

    batch = {"id": ["violin"], "text": [dict(DOCS)["violin"]]}
    settings = dataclasses.replace(RANDOM_STAGE.settings(), concat_documents=3)
    first, again = (RANDOM_STAGE.function(batch, settings, Inputs(1)) for _ in range(2))
    ids = [c["corpus_id"] for c in first["contexts"][0]]
    assert ids == [c["corpus_id"] for c in again["contexts"][0]]
    assert len(ids) == len(set(ids)) == 3 and "violin" not in ids
    draws = {tuple(c["corpus_id"] for c in RANDOM_STAGE.function(batch, settings, Inputs(s))["contexts"][0]) for s in range(6)}  # fmt: skip
    assert len(draws) > 1


@pytest.mark.slow
def test_methods_that_never_search_build_no_index(docs_file, tmp_path):
    counts = build(
        small_config(docs_file, tmp_path / "out", method="quest", cache_dir=str(tmp_path / "cache"))
    )
    assert counts.units > 0 and "index" not in counts.seconds
    assert not list((tmp_path / "cache").glob("index-*")) and not list((tmp_path / "cache").glob("*embed*"))


@pytest.mark.parametrize("stage", [RANDOM_STAGE, KEYWORD_STAGE], ids=lambda stage: stage.name)
def test_concat_and_quest_honour_the_near_copy_threshold(docs_file, stage):
    """velmora-copy shares most of velmora's shingles: excluded at the default threshold, placed at 1.0."""
    from hf_entropylong.models import load_tokenizer

    tokenizer = load_tokenizer("embedded:SmolLM2-135M-Instruct")
    corpus = load_dataset("json", data_files=str(docs_file), split="train")
    corpus = corpus.select(
        [i for i, row in enumerate(corpus) if row["id"] in ("velmora", "velmora-copy", "grennick")]
    )

    inputs = SimpleNamespace(
        tokenizer=tokenizer, corpus=corpus, seed=0, max_seq_length=1024, same_source=True
    )
    batch = {"id": ["velmora"], "text": [dict(DOCS)["velmora"]]}
    placed = {}
    for threshold in (0.3, 1.0):
        settings = dataclasses.replace(stage.settings(), near_duplicate_threshold=threshold)
        out = stage.function(batch, settings, inputs)
        placed[threshold] = {c["corpus_id"] for c in out["contexts"][0]}
        assert out["num_excluded_near_duplicate"][0] == (threshold < 1)
    assert "velmora-copy" not in placed[0.3] and "velmora-copy" in placed[1.0]
