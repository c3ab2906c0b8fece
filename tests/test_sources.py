import json

import pytest

from hf_entropylong.sources import SourceError, check_unique_ids, check_utf8, load_text_source


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_missing_text_column_names_it(tmp_path):
    source = write_jsonl(tmp_path / "roots.jsonl", [{"body": "some text"}])
    with pytest.raises(SourceError, match=r"no text column 'text' \(columns: body\).*--roots_text_column"):
        load_text_source(str(source), role="roots")


def test_empty_and_whitespace_documents_are_dropped_and_counted(tmp_path):
    rows = [
        {"id": "a", "text": "kept"},
        {"id": "b", "text": ""},
        {"id": "c", "text": " \n\t "},
        {"id": "d", "text": None},
    ]
    dataset, counts = load_text_source(str(write_jsonl(tmp_path / "r.jsonl", rows)))
    assert dataset["id"] == ["a"] and dataset["text"] == ["kept"]
    assert (counts.rows, counts.kept, counts.empty) == (4, 1, 3)


def test_ids_fall_back_to_source_and_row(tmp_path):
    source = write_jsonl(tmp_path / "r.jsonl", [{"text": "one"}, {"text": "two"}])
    dataset, _ = load_text_source(str(source), id_column="id")
    assert dataset["id"] == [f"{source}#0", f"{source}#1"]


def test_non_text_value_names_the_row(tmp_path):
    source = write_jsonl(tmp_path / "r.jsonl", [{"text": "ok"}, {"text": "fine"}, {"text": 12}])
    with pytest.raises(SourceError, match="row 3: column 'text' holds int"):  # counted from 1, as editors do
        load_text_source(str(source), role="corpus")


def test_non_utf8_file_names_the_line(tmp_path):
    source = tmp_path / "latin1.jsonl"
    source.write_bytes(b'{"text": "fine"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(SourceError, match=r"latin1.jsonl: line 2 is not valid UTF-8"):
        load_text_source(str(source))


def test_utf8_check_accepts_characters_split_across_chunks(tmp_path):
    source = tmp_path / "ok.txt"
    source.write_text("é" * 1000 + "\n€\n", encoding="utf-8")
    check_utf8(source, chunk_bytes=7)  # every chunk boundary cuts a multi-byte character


def test_unsupported_file_type(tmp_path):
    source = tmp_path / "data.xml"
    source.write_text("<a/>")
    with pytest.raises(SourceError, match="unsupported file type"):
        load_text_source(str(source))


def test_parquet_and_saved_dataset_folders(tmp_path):
    import datasets

    table = datasets.Dataset.from_dict({"doc": ["alpha", "beta"], "key": [7, 8]})
    table.to_parquet(str(tmp_path / "t.parquet"))
    table.save_to_disk(str(tmp_path / "saved"))
    for source in (tmp_path / "t.parquet", tmp_path / "saved"):
        dataset, counts = load_text_source(str(source), text_column="doc", id_column="key")
        assert dataset["id"] == ["7", "8"] and counts.kept == 2


def test_embedded_corpus():
    dataset, counts = load_text_source("embedded:wiki-summaries")
    assert counts.rows == 10_033 and counts.kept > 10_000
    assert set(dataset.column_names) == {"id", "text"}


def test_empty_file_and_missing_source_are_named(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n  \n")
    with pytest.raises(SourceError, match="empty.jsonl: the file is empty"):
        load_text_source(str(empty), role="roots")
    with pytest.raises(SourceError, match="missing.jsonl': no such file or folder"):
        load_text_source(str(tmp_path / "missing.jsonl"), role="roots")


@pytest.mark.parametrize("source", ["lr/roots.jsonl", "data/missing", "./corpus", "/nowhere/corpus"])
def test_a_missing_path_is_refused_at_once_never_sent_to_the_hub(source, tmp_path, monkeypatch):
    """A data-file extension, a leading / or ., or an existing folder part: a path, refused in one line without
    asking the Hub (which would retry for half a minute first)."""
    import datasets

    def hub(*args, **kwargs):
        raise AssertionError(f"sent to the Hub: {args}")

    monkeypatch.setattr(datasets, "load_dataset", hub)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    with pytest.raises(SourceError, match=r"no such file or folder \(a path, so the Hub was not asked\)"):
        load_text_source(source, role="roots")
    with pytest.raises(AssertionError, match="sent to the Hub"):  # a Hub id still goes to the Hub
        load_text_source("org/name::config", role="roots")


def test_a_file_edited_with_its_time_stamp_restored_is_read_again(tmp_path):
    import os

    source = write_jsonl(tmp_path / "r.jsonl", [{"id": "a", "text": "first"}])
    stamp = source.stat()
    dataset, counts = load_text_source(str(source))
    write_jsonl(source, [{"id": "a", "text": "other"}])
    os.utime(source, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    edited, edited_counts = load_text_source(str(source))
    assert dataset["text"] == ["first"] and edited["text"] == ["other"]
    assert counts.identity != edited_counts.identity


def test_rows_without_an_id_are_numbered_by_their_row(tmp_path):
    rows = [{"id": "a", "text": "one"}, {"text": "two"}, {"id": None, "text": "three"}]
    source = write_jsonl(tmp_path / "r.jsonl", rows)
    dataset, _ = load_text_source(str(source))
    assert dataset["id"] == ["a", f"{source}#1", f"{source}#2"]  # never "None"
    again, _ = load_text_source(str(source))
    assert again["id"] == dataset["id"]


def test_duplicate_ids_are_refused_by_name(tmp_path):
    source = write_jsonl(tmp_path / "r.jsonl", [{"id": "x", "text": "one"}, {"id": "x", "text": "two"}])
    dataset, _ = load_text_source(str(source), role="roots")
    with pytest.raises(SourceError, match=r"the id 'x' is used by more than one row.*--roots_id_column"):
        check_unique_ids(dataset, str(source), role="roots")
    check_unique_ids(load_text_source(str(source), id_column=None)[0], str(source))  # numbered rows: distinct


@pytest.mark.parametrize("blank_lines", [0, 2])
def test_a_broken_json_line_is_named_by_its_line_number(tmp_path, blank_lines):
    source = tmp_path / "broken.jsonl"
    lines = [
        '{"id": "a", "text": "one"}',
        *[""] * blank_lines,
        '{"id": "b", "text": "two"}',
        '{"id": "c", "text": ]',
    ]
    source.write_text("\n".join(lines) + '\n{"id": "d", "text": "four"}\n')
    with pytest.raises(SourceError, match=rf"broken.jsonl': line {3 + blank_lines} is not valid JSON"):
        load_text_source(str(source), role="roots")
