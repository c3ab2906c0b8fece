import logging
import re

import datasets
import numpy as np
import pytest

from hf_entropylong.index.corpus_index import build_corpus_index, embed_texts, search
from hf_entropylong.index.exclusion import is_near_duplicate
from hf_entropylong.models import EMBEDDED_EMBEDDER, EMBEDDED_LM, load_embedder, load_tokenizer
from hf_entropylong.stages.retrieval import query_window

TEXT = " ".join(f"w{i}" for i in range(40))


def test_query_window_takes_words_each_side():
    start = TEXT.index("w20")
    assert query_window(TEXT, start, start + 3, 2) == "w18 w19 w20 w21 w22"
    assert query_window(TEXT, start + 1, start + 2, 1) == "w19 w20 w21"  # a sub-word token: its whole word
    assert query_window(TEXT, 0, 2, 3) == "w0 w1 w2 w3"  # document start
    end = TEXT.index("w39")
    assert query_window(TEXT, end, len(TEXT), 2) == "w37 w38 w39"  # document end
    assert query_window(TEXT, start - 1, start + 3, 1) == "w19 w20 w21"  # leading space in the token
    assert query_window(TEXT, start - 1, start, 1) == "w19 w20 w21"  # a whitespace-only token
    assert query_window("", 0, 0, 16) == ""


def test_query_window_from_tokenizer_offsets():
    tokenizer = load_tokenizer(EMBEDDED_LM)
    text = "The Velmora Accord was signed by Tobias Grennick, merchant of Calder Bay, in 1847."
    encoding = tokenizer(text, return_offsets_mapping=True)
    tokens = [text[s:e] for s, e in encoding["offset_mapping"]]
    t = next(i for i, token in enumerate(tokens) if "Gren" in token)
    start, end = encoding["offset_mapping"][t]
    assert query_window(text, start, end, 2) == "by Tobias Grennick, merchant of"
    assert len(query_window(text, start, end, 16).split()) == len(text.split())


def test_flat_index_matches_brute_force_cosine(tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    corpus = datasets.Dataset.from_dict({"text": [f"doc {i}" for i in range(50)]})

    class Fixed:  # an embedder returning known vectors for "doc i"
        def encode(self, texts, **kwargs):
            return np.stack([vectors[int(t.split()[1])] for t in texts])

    index = build_corpus_index(corpus, Fixed(), index_path=tmp_path / "flat.faiss")
    queries = rng.normal(size=(4, 8)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    scores, ids = search(index, queries, 5)
    expected = np.argsort(-(queries @ vectors.T), axis=1)[:, :5]
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ vectors.T, expected, 1), rtol=1e-5)

    # The saved index is reused: a second build does not embed again.
    class Refuses:
        def encode(self, texts, **kwargs):
            raise AssertionError("the saved index must be loaded")

    reloaded = build_corpus_index(corpus, Refuses(), index_path=tmp_path / "flat.faiss")
    np.testing.assert_array_equal(search(reloaded, queries, 5)[1], ids)


def test_ivf_index_trains_and_finds_exact_copies(tmp_path):
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(400, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    corpus = datasets.Dataset.from_dict({"text": [f"doc {i}" for i in range(400)]})

    class Fixed:
        def encode(self, texts, **kwargs):
            return np.stack([vectors[int(t.split()[1])] for t in texts])

    index = build_corpus_index(
        corpus, Fixed(), index_path=tmp_path / "ivf.faiss", index_factory="IVF8,Flat", train_size=200
    )
    assert index.is_trained and index.ntotal == 400
    _, ids = search(index, vectors[[3, 150, 399]], 1, nprobe=8)
    assert ids[:, 0].tolist() == [3, 150, 399]


def test_k_larger_than_the_corpus_is_clamped(tmp_path, caplog):
    corpus = datasets.Dataset.from_dict(
        {"text": ["a cat sat on the mat", "stock markets fell sharply today"]}
    )
    embedder = load_embedder(EMBEDDED_EMBEDDER, device="cpu")
    index = build_corpus_index(corpus, embedder, index_path=tmp_path / "small.faiss")
    with caplog.at_level(logging.WARNING):
        scores, ids = search(index, embed_texts(embedder, ["a kitten on a rug"]), 10)
    assert ids.shape == (1, 2) and ids[0, 0] == 0  # the semantically closest document first
    assert scores[0, 0] > scores[0, 1]
    assert "searching 2" in caplog.text


def test_embeddings_are_normalised():
    embedder = load_embedder(EMBEDDED_EMBEDDER, device="cpu")
    vectors = embed_texts(embedder, ["one", "two words", "three little words"])
    assert vectors.dtype == np.float32 and vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [
        (
            "The Velmora Accord was signed in 1847 by the merchant Tobias Grennick and the harbour master.",
            True,
        ),
        (
            "THE velmora accord was signed in 1847, by the merchant Tobias Grennick and the harbour master!",
            True,
        ),
        (
            "Preface. The Velmora Accord was signed in 1847 by the merchant Tobias Grennick and the harbour "
            "master. Many more sentences follow about unrelated things entirely.",
            True,
        ),
        (
            "Tobias Grennick was a merchant; he kept the ledger of tolls in his counting house on Wharf Street.",
            False,
        ),
        ("Volcanoes form where tectonic plates diverge or converge, releasing lava and ash.", False),
    ],
)
def test_near_duplicates(candidate, expected):
    root = "The Velmora Accord was signed in 1847 by the merchant Tobias Grennick and the harbour master."
    assert is_near_duplicate(root, candidate) is expected


def test_near_duplicates_of_short_texts():
    assert is_near_duplicate("Hello there.", "hello there")
    assert is_near_duplicate(
        "Hello there.", "Well, hello there, friend, how are you today my dear old friend?"
    )
    assert not is_near_duplicate("Hello there.", "Goodbye.")
    assert not is_near_duplicate("...", "anything at all")


def test_query_window_for_every_token_of_a_document():
    """Every token's window, against a brute-force scan of the words around the token's characters."""
    tokenizer = load_tokenizer(EMBEDDED_LM)
    text = "  Photosynthesis converts light-energy into chemical energy; chlorophyll absorbs it.  "
    words = [(m.start(), m.end(), m.group()) for m in re.finditer(r"\S+", text)]
    offsets = tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
    assert any(
        start > 0 and text[start - 1] not in " " and text[start] != " " for start, _ in offsets
    )  # sub-words
    for start, end in offsets:
        touching = [i for i, (s, e, _) in enumerate(words) if s < max(end, start + 1) and e > start]
        if not touching:  # whitespace: the next word, or the last at the end
            touching = [next((i for i, (s, _, _) in enumerate(words) if s >= end), len(words) - 1)]
        expected = [w for _, _, w in words[max(0, touching[0] - 2) : touching[-1] + 3]]
        assert query_window(text, start, end, 2).split() == expected, (start, end, text[start:end])


class Vectors:
    """An embedder returning known vectors for "doc i", counting what it embeds."""

    def __init__(self, vectors, fail_after=None):
        self.vectors, self.fail_after, self.seen = vectors, fail_after, 0

    def encode(self, texts, **kwargs):
        if self.fail_after is not None and self.seen + len(texts) > self.fail_after:
            raise KeyboardInterrupt
        self.seen += len(texts)
        return np.stack([self.vectors[int(t.split()[1])] for t in texts])


def unit_vectors(n, d, seed):
    vectors = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_sharded_ivf_index_is_merged_on_disk_and_embedding_resumes(tmp_path):
    vectors = unit_vectors(300, 16, 2)
    corpus = datasets.Dataset.from_dict({"text": [f"doc {i}" for i in range(300)]})
    path = tmp_path / "ivf.faiss"
    settings = {"index_path": path, "index_factory": "IVF4,Flat", "batch_size": 10, "shard_size": 100}
    with pytest.raises(KeyboardInterrupt):  # killed while embedding the third shard
        build_corpus_index(corpus, Vectors(vectors, fail_after=250), **settings)
    assert len(list((tmp_path / "ivf.faiss.embeddings").glob("*.arrow"))) == 2
    resumed = Vectors(vectors)
    index = build_corpus_index(corpus, resumed, **settings)
    assert resumed.seen == 100  # only the unfinished shard was embedded again
    assert index.ntotal == 300 and (tmp_path / "ivf.faiss.ivfdata").exists()
    assert not (tmp_path / "ivf.faiss.shards").exists() and not (tmp_path / "ivf.faiss.embeddings").exists()
    scores, ids = search(index, vectors[[0, 150, 299]], 3, nprobe=4)  # nprobe = nlist: exact
    expected = np.argsort(-(vectors[[0, 150, 299]] @ vectors.T), axis=1)[:, :3]
    np.testing.assert_array_equal(ids, expected)
    reloaded = build_corpus_index(corpus, Vectors(vectors, fail_after=0), **settings)
    np.testing.assert_array_equal(search(reloaded, vectors[[0, 150, 299]], 3, nprobe=4)[1], expected)


def test_prompt_name_is_passed_as_task_to_task_adapter_models():
    class TaskModel:
        def get_model_kwargs(self):
            return ["task"]

        def encode(self, texts, prompt_name=None, task=None, **kwargs):
            assert task == prompt_name == "retrieval.query"
            return np.ones((len(texts), 4), np.float32) / 2

    assert embed_texts(TaskModel(), ["a", "b"], prompt_name="retrieval.query").shape == (2, 4)


def test_use_gpu_without_gpu_faiss_names_the_extra(tmp_path):
    corpus = datasets.Dataset.from_dict({"text": ["doc 0"]})
    with pytest.raises(ImportError, match=r"\[gpu\]"):
        build_corpus_index(
            corpus, Vectors(unit_vectors(1, 4, 0)), index_path=tmp_path / "x.faiss", use_gpu=True
        )


def test_missing_text_column_is_named(tmp_path):
    corpus = datasets.Dataset.from_dict({"body": ["doc 0"]})
    with pytest.raises(ValueError, match="no column 'text'"):
        build_corpus_index(corpus, Vectors(unit_vectors(1, 4, 0)), index_path=tmp_path / "x.faiss")


RIVER = (
    "The river Aldwyn rises in the northern moors, runs south through the market town of Kessing, turns west "
    "below the old abbey and reaches the sea at Port Merrow after one hundred and twelve miles. Its lower valley "
    "was drained by Dutch engineers in the seventeenth century. Salmon still return to its upper reaches each "
    "autumn, and the Kessing weir holds the oldest fish ladder in the county."
)


def _replace_every(text: str, step: int) -> str:
    return " ".join("zzz" if i % step == 0 else word for i, word in enumerate(text.split()))


@pytest.mark.parametrize(
    "planted",
    [
        RIVER.replace("old abbey", "ruined abbey"),
        _replace_every(RIVER, 7),  # one word in seven changed, evenly spaced: the worst case for shingles
        " ".join(reversed(RIVER.split(". "))),  # sentences reordered
        "Rivers of the north. " * 10 + RIVER + " Further reading follows." * 10,  # inside a longer document
        RIVER.split(". ")[0] + ".",  # a passage of the root: a root assembled from corpus documents
    ],
)
def test_planted_near_copies_are_near_duplicates(planted):
    assert is_near_duplicate(RIVER, planted)


def test_a_text_on_the_same_subject_is_not_a_near_duplicate():
    assert not is_near_duplicate(  # one clause in common, the rest its own
        RIVER,
        "The river Aldwyn rises in the northern moors, where sheep graze on common land among heather and "
        "bracken. Shepherds there still mark their flocks with the colours of their farms, and the spring fair at "
        "Hollins draws buyers from three counties.",
    )
    assert not is_near_duplicate(
        RIVER,
        "Port Merrow is a fishing town at the mouth of the Aldwyn. Its harbour was rebuilt after the storm of "
        "1881, and a lifeboat station has stood on the east pier since 1890.",
    )
