"""Files written under a temporary name and renamed; caches checked against their recorded checksum; whole-file
digests of model weights, hashed once."""

import errno
import logging
import os
from types import SimpleNamespace

import datasets
import numpy as np
import pytest
from test_retrieval import Vectors, unit_vectors

from hf_entropylong import files, models
from hf_entropylong.index.corpus_index import build_corpus_index, search


def test_a_write_that_fails_leaves_the_old_file_and_no_partial(tmp_path, monkeypatch):
    path = tmp_path / "marker.json"
    files.write_text(path, '{"old": true}\n')

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        files.write_text(path, '{"new": true}\n')
    assert path.read_text() == '{"old": true}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["marker.json"]


def _flip_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("damage", [_flip_byte, _truncate])
def test_a_damaged_cache_is_named_set_aside_and_computed_again(tmp_path, damage, caplog):
    table = datasets.Dataset.from_dict({"x": list(range(50))})
    cache = tmp_path / "double.arrow"
    calls = []

    def double(batch):
        calls.append(len(batch["x"]))
        return {"y": [2 * x for x in batch["x"]]}

    first, computed = files.cached_map(table, cache, function=double, batched=True)
    assert (tmp_path / "double.arrow.sha256").is_file() and sum(calls) == 50 and computed
    again, computed = files.cached_map(table, cache, function=double, batched=True)
    assert again["y"] == first["y"] and not computed and sum(calls) == 50  # read back from the cache
    damage(cache)
    files._checked.clear()  # a new process
    with caplog.at_level(logging.WARNING):
        again, computed = files.cached_map(table, cache, function=double, batched=True)
    assert again["y"] == [2 * x for x in range(50)] and computed and sum(calls) == 100
    assert str(cache) in caplog.text and "set aside" in caplog.text
    assert len(list(tmp_path.glob("double.arrow.corrupt-*"))) == 2  # the file and its record, kept


def test_a_cache_without_its_record_is_not_trusted(tmp_path):
    cache = tmp_path / "shard.arrow"
    cache.write_bytes(b"written by someone else")
    assert not files.cache_is_sound(cache) and not cache.exists()
    assert list(tmp_path.glob("shard.arrow.corrupt-*"))


@pytest.mark.parametrize("damage", [_flip_byte, _truncate])
def test_a_damaged_index_file_is_rebuilt(tmp_path, damage, caplog):
    vectors = unit_vectors(40, 16, 3)
    corpus = datasets.Dataset.from_dict({"text": [f"doc {i}" for i in range(40)]})
    path = tmp_path / "flat.faiss"
    build_corpus_index(corpus, Vectors(vectors), index_path=path)
    expected = search(build_corpus_index(corpus, Vectors(vectors, fail_after=0), index_path=path), vectors, 5)
    damage(path)  # the middle of a flat index's file is its vectors
    files._checked.clear()
    embedder = Vectors(vectors)
    with caplog.at_level(logging.WARNING):
        index = build_corpus_index(corpus, embedder, index_path=path)
    assert embedder.seen == 40 and str(path) in caplog.text  # named, and built again from the corpus
    np.testing.assert_array_equal(search(index, vectors, 5)[1], expected[1])
    assert list(tmp_path.glob("flat.faiss.corrupt-*"))


def test_an_index_factory_faiss_cannot_make_fails_before_any_embedding(tmp_path):
    corpus = datasets.Dataset.from_dict({"text": [f"doc {i}" for i in range(10)]})

    class Embedder(Vectors):
        def get_embedding_dimension(self):
            return 16

    embedder = Embedder(unit_vectors(10, 16, 0))
    for factory, reason in (("Bogus", "could not parse"), ("PQ7", "multiple of")):
        with pytest.raises(ValueError, match=rf"index_factory '{factory}' is not a FAISS index .*{reason}"):
            build_corpus_index(corpus, embedder, index_path=tmp_path / "x.faiss", index_factory=factory)
    assert embedder.seen == 0 and not list(tmp_path.iterdir())


def test_model_identity_hashes_the_whole_weights_once(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENTROPYLONG_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "model"
    folder.mkdir()
    weights = folder / "model.safetensors"
    data = bytearray(os.urandom(5 << 20))
    weights.write_bytes(bytes(data))
    hashed = []
    real = files.sha256_of
    monkeypatch.setattr(files, "sha256_of", lambda path: hashed.append(path) or real(path))
    first = models.model_identity(str(folder))
    assert models.model_identity(str(folder)) == first and len(hashed) == 1  # recorded, not hashed again
    data[len(data) // 2] ^= 1  # one weight in the middle, same size
    weights.write_bytes(bytes(data))
    assert models.model_identity(str(folder)) != first and len(hashed) == 2


def test_a_cache_write_on_a_full_disk_names_the_file(tmp_path, monkeypatch):
    table = datasets.Dataset.from_dict({"x": [1, 2]})

    def closed_file(batch):  # what pyarrow raises when the disk filled up under the cache writer
        raise ValueError("I/O operation on closed file")

    monkeypatch.setattr(files.shutil, "disk_usage", lambda path: SimpleNamespace(free=4096))
    with pytest.raises(OSError, match=r"the disk is full \(4,096 bytes free\).*stage.arrow"):
        files.cached_map(table, tmp_path / "stage.arrow", function=closed_file, batched=True)
