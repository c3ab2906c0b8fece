"""The ablation and baselines: their pieces on their own, then a build of each on the crafted corpus."""

import dataclasses
import itertools
import math
import random
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from builds import DOCS, small_config
from datasets import Dataset, load_dataset

from hf_entropylong.builder import BuildConfig, build
from hf_entropylong.builder.runner import statuses_of
from hf_entropylong.index.exclusion import copies_whole_root, is_near_duplicate
from hf_entropylong.methods import METHODS, stages_of
from hf_entropylong.methods.common import assemble_row
from hf_entropylong.methods.concat import RANDOM_STAGE
from hf_entropylong.methods.nextlong import NEGATIVES_STAGE, meta_chunks, select_negatives
from hf_entropylong.methods.noverify import top_one
from hf_entropylong.methods.quest import (
    KEYWORD_STAGE,
    document_keywords,
    keyword_cap,
    keyword_groups,
    part_of,
    partition,
    rake_keywords,
)
from hf_entropylong.stages.units import dependency_distances

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "build"


def test_rake_scores_phrases_by_degree_over_frequency():
    keywords = dict(rake_keywords("The merchant kept the toll ledger. The ledger was lost in the fire.", 10))
    # "toll ledger": toll 2/1 + ledger 3/2 (in two phrases, degree 3); "lost": 1; stop words never appear.
    assert keywords["toll ledger"] == pytest.approx(3.5)
    assert keywords["ledger"] == pytest.approx(1.5) and keywords["lost"] == 1.0
    assert not {"the", "was", "in"} & {word for phrase in keywords for word in phrase.split()}
    assert list(keywords)[:2] == ["merchant kept", "toll ledger"] and keywords["merchant kept"] == 4.0


TEXTS = [
    "First line is short.\nSecond line has two sentences. Here is the other one.\n" + "word " * 80,
    "\n\n" + "x" * 70 + "\nshort\n\nagain short\n" + "y" * 30 + "\n",
    "One line only.",
    "a\nb\nc\n" * 30,
]


def generated_texts(count: int, seed: int = 0) -> list[str]:
    """Texts of 0-40 lines: empty lines, short ones, and lines longer than the 60-character limit."""
    rng = random.Random(seed)
    lengths = [0, 0, 1, 5, 20, 35, 59, 60, 61, 90, 200]
    texts = [
        "\n".join("".join(rng.choices("abc .", k=rng.choice(lengths))) for _ in range(rng.randint(0, 40)))
        for _ in range(count)
    ]
    return [*TEXTS, *texts]


def lines_of(text: str, start: int, end: int) -> list[str]:
    return text[start:end].split("\n")


def test_meta_chunks_group_whole_lines_greedily_within_the_limit_in_order():
    """The chunking the NExtLong authors describe, checked on generated texts: lines are never cut; whole lines
    are grouped greedily while their summed length (newlines not counted) stays within the limit, a longer line
    being a chunk of its own; chunks keep the text's order, and every non-empty line is in one chunk."""
    for text in generated_texts(300):
        chunks = meta_chunks(text, 60)
        for start, end in chunks:  # never a cut inside a line
            assert start == 0 or text[start - 1] == "\n", text
            assert end == len(text) or text[end] == "\n", text
            lines = lines_of(text, start, end)
            assert sum(map(len, lines)) <= 60 or len(lines) == 1, text  # within the limit, or one long line
        for previous, following in itertools.pairwise(chunks):
            assert previous[1] < following[0], text  # in order, disjoint
            filled = sum(map(len, lines_of(text, *previous)))
            assert filled + len(lines_of(text, *following)[0]) > 60, text  # greedy: the next line did not fit
        in_chunks = [line for start, end in chunks for line in lines_of(text, start, end) if line]
        assert in_chunks == [line for line in text.split("\n") if line], text  # every non-empty line, once


def test_meta_chunks_cut_long_lines_at_sentences_only_when_asked():
    text = TEXTS[0]
    assert meta_chunks(text, 60)[-1] == (text.index("word"), len(text))  # an oversized line, whole
    chunks = meta_chunks(text, 60, sentences=True)
    assert all(end - start <= 60 for start, end in chunks)
    assert " ".join(text[start:end] for start, end in chunks).split() == text.split()
    assert [text[slice(*span)] for span in chunks[:2]] == [  # lines within the limit are never cut
        "First line is short.", "Second line has two sentences. Here is the other one."
    ]  # fmt: skip


def test_select_negatives_takes_the_least_k_that_fills_and_never_repeats_a_negative():
    candidates = [[1, 2, 3, 4], [2, 5, 6, 7]]
    lengths = dict.fromkeys(range(1, 8), 10)
    assert select_negatives(candidates, lengths, 35, limit=4) == (2, [[1, 2], [5, 6]])  # 2 is chunk 1's
    assert select_negatives(candidates, lengths, 40, limit=4) == (2, [[1, 2], [5, 6]])
    assert select_negatives(candidates, lengths, 41, limit=4) == (3, [[1, 2, 3], [5, 6, 7]])
    assert select_negatives(candidates, lengths, 41, limit=2) is None  # k may not pass the limit
    assert select_negatives(candidates, lengths, 200, limit=9) is None  # every candidate falls short


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


def test_a_row_is_one_text_tokenized_once_and_cut_to_the_length():
    from hf_entropylong.models import load_tokenizer

    tokenizer = load_tokenizer("embedded:SmolLM2-135M-Instruct")
    pieces = [
        "The first piece of text.",
        "A second one, a bit longer than the first.",
        "The root comes last.",
    ]
    whole = tokenizer("\n\n".join(pieces))["input_ids"] + [tokenizer.eos_token_id]
    assert assemble_row(tokenizer, pieces, "\n\n", len(whole) + 1, "end") is None  # falls short: dropped
    ids, spans, _ = assemble_row(tokenizer, pieces, "\n\n", 12, "end")
    assert ids == whole[-12:]  # the start cut away; the last piece whole, then EOS
    assert spans[0] == (0, 0) and spans[2][1] == 11 and tokenizer.decode(ids[slice(*spans[2])]) == pieces[2]
    ids, spans, _ = assemble_row(tokenizer, pieces, "\n", 8, "start")
    assert ids == (tokenizer("\n".join(pieces))["input_ids"])[:8]
    assert tokenizer.decode(ids[slice(*spans[0])]) == pieces[0] and spans[2] == (8, 8)


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


FULL_ROW = 160
"""The row length of the crafted corpus's full-row baselines (its documents are a few dozen tokens)."""


def document_of(corpus_id: str, method: str) -> str:
    """The corpus document a placed context comes from (NExtLong places chunks: `<document id>@<offset>`)."""
    return corpus_id.rsplit("@", 1)[0] if method == "nextlong" else corpus_id


@pytest.fixture(scope="module")
def method_builds(docs_file, demo_build, tmp_path_factory):
    """A build of every baseline on the crafted corpus, sharing (a copy of) the reference build's caches."""
    reference_dir, _ = demo_build
    cache = tmp_path_factory.mktemp("shared") / "cache"
    shutil.copytree(reference_dir / ".cache", cache)
    builds = {}
    for method in tuple(METHODS)[1:]:
        config = small_config(
            docs_file,
            tmp_path_factory.mktemp(method) / "out",
            method=method,
            cache_dir=str(cache),
            meta_chunk_chars=120,
            meta_chunk_sentences=True,  # the crafted roots are one line each: cut them to get several chunks
            quest_max_keyword_share=0.5,  # eight documents: a keyword shared by up to four groups them
            max_seq_length=1024 if method == "noverify" else FULL_ROW,
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
        documents = {document_of(corpus_id, method) for corpus_id in placed}
        assert row["root_id"] not in documents  # never the root itself (nor, for nextlong, a chunk of it)
        if row["root_id"] == "velmora":
            assert "velmora-copy" not in documents  # nor its near-copy
        assert set(row["unit_context_ids"]) <= set(placed)
        if method == "noverify":  # a unit of its own, packed with others
            assert row["num_unit_tokens"] in (0, row["num_tokens"] + sum(row["unit_context_lengths"]))
        else:  # the whole row, one span
            assert row["num_unit_tokens"] == (FULL_ROW if row["status"] == "ok" else 0)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["concat", "quest", "nextlong"])
def test_a_full_row_baseline_gives_each_root_one_row_of_one_span(method, method_builds):
    config, counts = method_builds[method]
    rows = load_dataset(config.output_dir, split="train")
    roots = load_dataset(config.output_dir, "dependencies", split="train")
    ok = [row["root_id"] for row in roots if row["status"] == "ok"]
    assert ok and sorted(r for ids in rows["root_ids"] for r in ids) == sorted(ok)  # one row per kept root
    assert all(
        spans == [FULL_ROW] and len(ids) == FULL_ROW
        for spans, ids in zip(rows["seq_lengths"], rows["input_ids"], strict=True)
    )
    assert counts.roots_by_status["ok"] == counts.sequences == len(ok)
    assert sum(counts.roots_by_status.values()) == counts.roots  # the dropped ones counted by reason


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
def test_the_training_collator_trains_a_baseline_row_as_one_span(method_builds):
    from hf_entropylong.train.spans import PackedCollator

    config, _ = method_builds["nextlong"]
    row = load_dataset(config.output_dir, split="train")[0]
    batch = PackedCollator(pad_token_id=0)([row])
    assert batch["position_ids"][0].tolist() == list(range(FULL_ROW))  # no restart: one attention span
    assert (batch["labels"][0, 1:] != -100).all() and batch["labels"][0, 0] == -100


@pytest.mark.slow
def test_nextlong_keeps_the_root_in_order_between_its_negatives(method_builds):
    config, counts = method_builds["nextlong"]
    roots = load_dataset(config.output_dir, "dependencies", split="train")
    packed = load_dataset(config.output_dir, split="train")
    sample_of = {ids[0]: text for ids, text in zip(packed["root_ids"], packed["text"], strict=True)}
    chunked = [row for row in roots if row["status"] == "ok" and len(row["positions"]) > 1]
    assert chunked and counts.mean_dependency_distance > 0
    for row in chunked:
        spans = [(p["char_start"], p["char_end"]) for p in row["positions"]]
        assert all(end - start <= 120 for start, end in spans)
        sample = sample_of[row["root_id"]]
        chunks = [row["root_text"][start:end] for start, end in spans]
        found = [sample.find(chunk) for chunk in chunks]
        in_row = [place for place in found if place >= 0]
        assert in_row and found[: len(in_row)] == sorted(in_row)  # a prefix of the chunks, in order
        # one distance between consecutive chunks in the row (the last may be cut partway: it counts)
        assert len(in_row) - 1 <= len(row["dependency_distances"]) <= len(in_row)
        assert all(sample[found[i] + len(chunks[i]) :].startswith("\n") for i in range(len(in_row) - 1))


@pytest.mark.slow
def test_no_nextlong_negative_is_a_chunk_of_its_root_or_of_a_near_copy(method_builds):
    config, _ = method_builds["nextlong"]
    texts = dict(DOCS)
    for row in load_dataset(config.output_dir, "dependencies", split="train"):
        for context in row["contexts"]:
            document, offset = context["corpus_id"].rsplit("@", 1)
            assert document != row["root_id"]
            chunk = next(
                texts[document][a:b] for a, b in meta_chunks(texts[document], 120, True) if a == int(offset)
            )
            assert not copies_whole_root(row["root_text"], texts[document]) and chunk.strip()
            if row["root_id"] == "velmora":
                assert document != "velmora-copy"


@pytest.mark.slow
def test_nextlong_drops_roots_of_one_meta_chunk_with_their_own_status(method_builds):
    config, counts = method_builds["nextlong"]
    roots = {row["root_id"]: row for row in load_dataset(config.output_dir, "dependencies", split="train")}
    assert (
        roots["short"]["status"] == "single_chunk" and not roots["short"]["contexts"]
    )  # "Hello.": one chunk
    assert counts.roots_by_status["single_chunk"] == sum(
        len(meta_chunks(text, 120, True)) < 2 for name, text in DOCS if name != "long"
    )


def test_nextlong_keeps_negatives_that_resemble_the_root_and_drops_copies_of_it():
    """A chunk of grennick shares a third of its shingles with velmora (the passage-level near-copy test would drop
    it): a hard negative, kept. Chunks of velmora itself and of velmora-copy (the whole root again) are not."""
    from hf_entropylong.index.exclusion import eligible_neighbours
    from hf_entropylong.methods.nextlong import WholeRootCopies, chunk_corpus

    texts = dict(DOCS)
    corpus = Dataset.from_list([{"id": d, "text": texts[d]} for d in ("velmora", "velmora-copy", "grennick")])
    settings = NEGATIVES_STAGE.settings(meta_chunk_chars=120, meta_chunk_sentences=True)
    chunks = corpus.map(chunk_corpus, batched=True, with_indices=True, fn_kwargs={"settings": settings},
                        remove_columns=corpus.column_names)  # fmt: skip
    rows = {i: (row["id"], row["text"]) for i, row in enumerate(chunks)}
    resembling = next(i for i, (d, text) in rows.items() if d == "grennick" and "nine silver" in text)
    assert is_near_duplicate(texts["velmora"], rows[resembling][1])
    kept, excluded = eligible_neighbours(
        "velmora", texts["velmora"], [1.0] * len(rows), list(rows), rows, k=len(rows), same_source=True,
        threshold=0.3, near_copy=WholeRootCopies(corpus, chunks, 0.3),
    )  # fmt: skip
    assert {rows[row][0] for row, _, _ in kept} == {"grennick"} and resembling in {row for row, _, _ in kept}
    documents = [d for d, _ in rows.values()]
    assert excluded == {"self": documents.count("velmora"), "near_duplicate": documents.count("velmora-copy")}
    assert copies_whole_root(
        "Hello there.", "She said: hello there, and left."
    )  # a root shorter than a shingle


@pytest.mark.slow
def test_quest_places_documents_that_share_a_keyword_of_the_root(method_builds, docs_file):
    config, _ = method_builds["quest"]
    card = (Path(config.output_dir) / "README.md").read_text()
    assert "pretty_name: keyword groups baseline" in card and "**keyword groups**" in card  # no query model
    assert "Quest (Gao et al. 2024)" not in card
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


def test_quest_groups_are_disjoint_and_by_each_documents_best_kept_keyword(docs_file):
    from hf_entropylong.models import load_tokenizer

    tokenizer = load_tokenizer("embedded:SmolLM2-135M-Instruct")
    corpus = load_dataset("json", data_files=str(docs_file), split="train")
    settings = dataclasses.replace(KEYWORD_STAGE.settings(), quest_max_keyword_share=0.5)
    groups = keyword_groups(corpus, settings, tokenizer, FULL_ROW)
    members = [int(row) for rows in groups.members.values() for row in rows]
    assert members and len(members) == len(set(members))  # every document in one group at most
    keywords = document_keywords(corpus["text"], settings)
    for keyword, rows in groups.members.items():
        assert keyword in groups.usable
        for row in rows:
            assert next(k for k in keywords[row] if k in groups.usable) == keyword
    frequency = {k: sum(k in ks for ks in keywords) for k in groups.usable}
    assert groups.cap == 4 and all(2 <= n <= 4 for n in frequency.values())  # filtered by document frequency
    strict = dataclasses.replace(settings, quest_max_keyword_share=0.3)
    assert (
        keyword_groups(corpus, strict, tokenizer, FULL_ROW).usable < groups.usable
    )  # "velmora accord", 3 of 8


def test_quest_caps_keywords_at_the_documents_that_fill_rows_and_cuts_groups_into_disjoint_rows():
    settings = KEYWORD_STAGE.settings()
    assert settings.quest_max_keyword_share is None
    assert keyword_cap(settings, 2000, mean_tokens=100.0, row_tokens=8192) == 328  # 4 rows of 82 documents
    assert keyword_cap(dataclasses.replace(settings, quest_max_keyword_share=0.01), 2000, 100.0, 8192) == 20
    rows, lengths = list(range(10)), [30, 50, 10, 90, 20, 20, 20, 20, 5, 5]
    parts = partition(rows, lengths, 80)
    assert parts == [
        [0, 1],
        [2, 3],
        [4, 5, 6, 7],
        [8, 9],
    ]  # consecutive, disjoint, each fills; the last short
    chosen = {part_of(f"root-{i}", parts)[0] for i in range(40)}
    assert chosen == {0, 2, 4, 8} and part_of("root-7", parts) == part_of("root-7", parts)  # stable, spread


def test_concat_draws_per_root_seeded_documents(docs_file):
    """Pure draw: the same seed gives the same documents; another seed other ones."""
    from hf_entropylong.models import load_tokenizer

    tokenizer = load_tokenizer("embedded:SmolLM2-135M-Instruct")
    corpus = load_dataset("json", data_files=str(docs_file), split="train")

    class Inputs:
        def __init__(self, seed):
            self.tokenizer, self.corpus, self.seed = tokenizer, corpus, seed
            self.max_seq_length, self.same_source = 128, True

    batch = {"id": ["violin"], "text": [dict(DOCS)["violin"]]}
    settings = RANDOM_STAGE.settings()
    first, again = (RANDOM_STAGE.function(batch, settings, Inputs(1)) for _ in range(2))
    ids = [c["corpus_id"] for c in first["contexts"][0]]
    assert ids == [c["corpus_id"] for c in again["contexts"][0]] and first["status"] == ["ok"]
    assert len(ids) == len(set(ids)) >= 2 and "violin" not in ids  # documents until the row is full
    draws = {tuple(c["corpus_id"] for c in RANDOM_STAGE.function(batch, settings, Inputs(s))["contexts"][0]) for s in range(6)}  # fmt: skip
    assert len(draws) > 1


@pytest.mark.slow
def test_methods_that_never_search_build_no_index(docs_file, tmp_path):
    counts = build(
        small_config(
            docs_file,
            tmp_path / "out",
            method="quest",
            cache_dir=str(tmp_path / "cache"),
            quest_max_keyword_share=0.5,
            max_seq_length=FULL_ROW,
        )
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
        tokenizer=tokenizer, corpus=corpus, seed=0, max_seq_length=1024, same_source=True, device=None
    )
    batch = {"id": ["velmora"], "text": [dict(DOCS)["velmora"]]}
    placed = {}
    for threshold in (0.3, 1.0):
        extra = {"quest_max_keyword_share": 1.0} if stage is KEYWORD_STAGE else {}  # three documents
        settings = dataclasses.replace(stage.settings(), near_duplicate_threshold=threshold, **extra)
        out = stage.function(batch, settings, inputs)
        placed[threshold] = {c["corpus_id"] for c in out["contexts"][0]}
        assert out["num_excluded_near_duplicate"][0] == (threshold < 1)
    assert "velmora-copy" not in placed[0.3] and "velmora-copy" in placed[1.0]


@pytest.fixture(scope="module")
def tiny_query_model(tmp_path_factory):
    """A tiny random sequence-to-sequence model saved with the embedded tokenizer: a doc2query stand-in."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    from hf_entropylong.models import load_tokenizer

    tokenizer = load_tokenizer("embedded:SmolLM2-135M-Instruct")
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=len(tokenizer), d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("doc2query")
    T5ForConditionalGeneration(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def test_quest_keywords_come_from_the_predicted_queries_when_a_model_is_given(tiny_query_model):
    from hf_entropylong.methods.quest import predict_queries

    texts = [text for _, text in DOCS[:3]]
    settings = dataclasses.replace(
        KEYWORD_STAGE.settings(), quest_query_model=tiny_query_model, quest_queries_per_document=2,
        quest_query_batch_size=2,
    )  # fmt: skip
    queries = predict_queries(texts, settings, device=None, seed=1)
    assert [len(q) for q in queries] == [2, 2, 2]  # two batches, two queries per document
    assert queries == predict_queries(texts, settings, device=None, seed=1)  # seeded
    keywords = document_keywords(texts, settings, seed=1)
    for per_document, predicted in zip(keywords, queries, strict=True):
        assert per_document == [k for k, _ in rake_keywords(". ".join(predicted), 10)]
    offline = dataclasses.replace(settings, quest_query_model=None)
    assert document_keywords(texts, offline) == [
        [k for k, _ in rake_keywords(text, 10)] for text in texts
    ]  # no model: RAKE over the text
    long_text = " ".join(text for _, text in DOCS[:6]) * 2  # 2,912 characters: two segments begun
    assert len(rake_keywords(long_text, 30)) > 20
    assert document_keywords([long_text], offline)[0] == [k for k, _ in rake_keywords(long_text, 20)]
