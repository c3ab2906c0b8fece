"""RULER's string matching against hand-computed cases, and the results files."""

import json

import pytest

from hf_entropylong.eval.ruler import RulerArguments, average_label, window_summary
from hf_entropylong.eval.ruler_constants import PAPER_WINDOW, TASK_NAMES
from hf_entropylong.eval.scoring import (
    ci95,
    markdown_table,
    postprocess,
    score_sample,
    string_match_all,
    string_match_part,
    summarize,
    table_scores,
    write_results,
)
from hf_entropylong.models import EMBEDDED_CORPUS


def test_all_match_counts_the_share_of_values_found():
    # multi-value NIAH: 4 values, 3 present → 0.75
    prediction = " 1234567, 2345678 and 3456789 are the numbers."
    assert string_match_all(prediction, ["1234567", "2345678", "3456789", "9999999"]) == 0.75
    assert string_match_all(prediction, ["1234567"]) == 1.0
    assert string_match_all(prediction, ["7654321"]) == 0.0


def test_all_match_is_case_insensitive_and_substring_based():
    assert string_match_all("The words are: APPLE, banana.", ["apple", "Banana", "cherry"]) == pytest.approx(
        2 / 3
    )
    # substring semantics, as RULER: "12345" is inside "123456"
    assert string_match_all("123456", ["12345"]) == 1.0


def test_part_match_takes_any_alternative():
    # QA: SQuAD gives alternatives; any of them is a hit
    assert string_match_part("It ends in the Black Sea.", ["the Black Sea", "Black Sea", "Euxine"]) == 1.0
    assert string_match_part("It ends in the Caspian.", ["the Black Sea", "Black Sea"]) == 0.0
    assert string_match_part("BLACK SEA", ["black sea"]) == 1.0


def test_part_and_all_differ_on_the_same_case():
    prediction, refs = "Paris", ["Paris", "Lyon"]
    assert string_match_part(prediction, refs) == 1.0
    assert string_match_all(prediction, refs) == 0.5


def test_postprocess_turns_control_characters_into_newlines():
    assert postprocess("  12\x0034\t \n") == "12\n34"
    # a value split by a control character is no longer found
    assert string_match_all("12\x0034", ["1234"]) == 0.0


def test_score_sample_rejects_unknown_metric_and_empty_references():
    with pytest.raises(ValueError, match="Unknown metric"):
        score_sample("x", ["x"], "exact")
    with pytest.raises(ValueError, match="at least one"):
        string_match_all("x", [])


def test_table_summary_and_markdown():
    rows = [
        {"task": "vt", "max_length": 1024, "score": 1.0},
        {"task": "vt", "max_length": 1024, "score": 0.5},
        {"task": "vt", "max_length": 2048, "score": 0.0},
        {"task": "cwe", "max_length": 1024, "score": 0.2},
    ]
    scores = table_scores(rows)
    by_key = {(s["task"], s["length"]): s for s in scores}
    assert by_key[("vt", 1024)]["score"] == 75.0 and by_key[("vt", 1024)]["samples"] == 2
    assert by_key[("cwe", 1024)]["score"] == 20.0
    summary = summarize(scores)
    assert summary["average"] == round((75 + 0 + 20) / 3, 2)
    assert summary["per_length"] == {"1024": 47.5, "2048": 0.0}
    table = markdown_table(scores)
    assert "| vt | 75.00 | 0.00 | 37.50 |" in table
    assert "| cwe | 20.00 |  | 20.00 |" in table
    assert table.splitlines()[-1] == "| **average** | 47.50 | 0.00 | **31.67** |"


def test_write_results_follows_the_shared_schema(tmp_path):
    args = RulerArguments(model="m", lengths=[1024], output_dir=str(tmp_path))
    result = {
        "scores": [{"task": "vt", "length": 1024, "score": 50.0, "samples": 2}],
        "summary": {"average": 50.0},
    }
    path = write_results(
        args, "ruler", 4096, result, markdown="| t |", predictions=[{"task": "vt", "prediction": "X"}]
    )
    results = json.loads(path.read_text())
    assert set(results) == {"model", "benchmark", "config", "scores", "summary"}
    assert (
        results["model"] == "m"
        and results["config"]["lengths"] == [1024]
        and results["config"]["window"] == 4096
    )
    assert results["scores"] == [{"task": "vt", "length": 1024, "score": 50.0, "samples": 2}]
    assert results["summary"]["average"] == 50.0
    assert (tmp_path / "results.md").read_text().startswith("# ruler: m")
    assert json.loads((tmp_path / "predictions.jsonl").read_text())["prediction"] == "X"


def test_confidence_intervals_shrink_with_samples_and_cover_perfect_cells():
    # Agresti-Coull: 1 of 1 correct is no proof of 100%; 500 samples at 50% give about ±4.4 points
    assert 40 < ci95(1.0, 1) < 50 and ci95(1.0, 500) < 1.0
    assert ci95(0.5, 500) == pytest.approx(100 * 1.96 * (0.25 / 504) ** 0.5, abs=0.01)
    assert ci95(0.5, 5) > ci95(0.5, 50) > ci95(0.5, 500)
    rows = [{"task": t, "max_length": 1024, "score": float(i % 2)} for t in ("vt", "cwe") for i in range(10)]
    scores = table_scores(rows)
    assert all(s["ci95"] == ci95(0.5, 10) for s in scores)
    # two independent cells: the average's half-width is the cells' divided by sqrt(2)
    assert summarize(scores)["average_ci95"] == pytest.approx(ci95(0.5, 10) / 2**0.5, abs=0.01)


def test_only_the_full_suite_on_the_essays_at_8k_to_128k_is_the_ruler_average():
    essays, window = "PaulGrahamEssays.json", list(PAPER_WINDOW)
    assert average_label(list(TASK_NAMES), window, essays) == "RULER average"
    # the default haystack, 4K added, a length missing, or the QA files missing: named for what it covers
    assert average_label(list(TASK_NAMES), window, EMBEDDED_CORPUS) == (
        "average of 13 of RULER's 13 tasks at 8K, 16K, 32K, 64K, 128K, "
        "on the Wikipedia-summary haystack (not RULER's essays)"
    )
    assert average_label(list(TASK_NAMES), [4096, *window], essays) == (
        "average of 13 of RULER's 13 tasks at 4K, 8K, 16K, 32K, 64K, 128K, on the PaulGrahamEssays.json haystack"
    )
    assert "RULER average" not in average_label(list(TASK_NAMES), window[:-1], essays)
    synthetic = [task for task in TASK_NAMES if not task.startswith("qa")]
    assert average_label(synthetic, window, essays).startswith(
        "average of 11 of RULER's 13 tasks (without qa_1, qa_2) at 8K"
    )


def test_the_8k_to_128k_window_is_averaged_and_tabled_apart_from_4k():
    scores = [
        {"task": task, "length": length, "score": score, "samples": 10}
        for task in ("vt", "cwe")
        for length, score in ((4096, 90.0), (8192, 60.0), (16384, 40.0))
    ]
    window = window_summary(scores, ["vt", "cwe"], EMBEDDED_CORPUS)
    assert window["window_8k_128k"] == 50.0 and summarize(scores)["average"] == pytest.approx(63.33)
    assert window["window_8k_128k_label"].startswith("average of 2 of RULER's 13 tasks")
    assert "at 8K, 16K," in window["window_8k_128k_label"]
    assert window_summary([s for s in scores if s["length"] == 4096], ["vt"], EMBEDDED_CORPUS) == {}
    table = markdown_table(scores, windows={"8K-128K": PAPER_WINDOW}).splitlines()
    assert table[0] == "| task | 4096 | 8192 | 16384 | 8K-128K | average |"
    assert table[2] == "| vt | 90.00 | 60.00 | 40.00 | 50.00 | 63.33 |"
