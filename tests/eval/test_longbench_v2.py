"""LongBench-v2: the parser on a small fixture, prompt, middle truncation, answer extraction, breakdown."""

import json

import pytest

from hf_entropylong.eval.longbench_v2 import (
    LongBenchV2Arguments,
    breakdown,
    build_prompt,
    evaluate,
    extract_answer,
    load_data,
    truncate_middle,
)


def _row(i, difficulty="easy", length="short", answer="A", context="Some context."):
    return {
        "_id": f"q{i}",
        "domain": "Single-Document QA",
        "sub_domain": "Academic",
        "difficulty": difficulty,
        "length": length,
        "question": f"Question {i}?",
        "choice_A": "alpha",
        "choice_B": "beta",
        "choice_C": "gamma",
        "choice_D": "delta",
        "answer": answer,
        "context": context,
    }


ROWS = [
    _row(0, "easy", "short", "A"),
    _row(1, "hard", "medium", "B", context="word " * 3000),
    _row(2, "hard", "long", "C"),
]


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "data.json"
    path.write_text(json.dumps(ROWS))
    return path


def test_loads_json_list_and_json_lines(data_file, tmp_path):
    assert [r["_id"] for r in load_data(data_file)] == ["q0", "q1", "q2"]
    lines = tmp_path / "data.jsonl"
    lines.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    assert load_data(lines) == load_data(data_file)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found.*--data"):
        load_data(tmp_path / "absent.json")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_data("")
    bad = tmp_path / "bad.json"
    bad.write_text("[{")
    with pytest.raises(ValueError, match="not a JSON list nor JSON lines"):
        load_data(bad)
    bad.write_text(json.dumps([{k: v for k, v in _row(0).items() if k != "choice_C"}]))
    with pytest.raises(ValueError, match="row 0 lacks choice_C"):
        load_data(bad)
    bad.write_text(json.dumps([_row(0), _row(1, answer="E")]))
    with pytest.raises(ValueError, match=r"row 1 \(q1\) has answer 'E'"):
        load_data(bad)
    bad.write_text(json.dumps([_row(0, difficulty="medium")]))
    with pytest.raises(ValueError, match="difficulty 'medium'"):
        load_data(bad)
    bad.write_text("[]")
    with pytest.raises(ValueError, match="no questions"):
        load_data(bad)


def test_prompt_matches_the_official_template():
    prompt = build_prompt(_row(0, context="  The $Q$ text.  "))
    assert prompt.startswith(
        "Please read the following text and answer the question below.\n\n<text>\nThe $Q$ text.\n</text>"
    )
    assert (
        "What is the correct answer to this question: Question 0?\nChoices:\n(A) alpha\n(B) beta\n(C) gamma\n(D) delta"
        in prompt
    )
    assert prompt.endswith('Format your response as follows: "The correct answer is (insert answer here)".')


def test_middle_truncation_keeps_head_and_tail(tokenizer):
    text = "START " + "filler " * 500 + "END"
    assert truncate_middle(text, tokenizer, 10_000) == text
    cut = truncate_middle(text, tokenizer, 40)
    assert cut.startswith("START") and cut.endswith("END")
    assert len(tokenizer.encode(cut, add_special_tokens=False)) <= 41  # re-tokenising may merge at the seam


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("The correct answer is (B)", "B"),
        ("**The correct answer is (C)**.", "C"),
        ("I think... The correct answer is D because", "D"),
        ("The correct answer is (E)", None),
        ("Answer: A", None),
        ("the correct answer is (A)", None),  # the official rule is case-sensitive
    ],
)
def test_answer_extraction(response, expected):
    assert extract_answer(response) == expected


def test_breakdown_by_difficulty_and_length():
    judged = [
        {"difficulty": "easy", "length": "short", "judge": True},
        {"difficulty": "easy", "length": "long", "judge": False},
        {"difficulty": "hard", "length": "medium", "judge": True},
        {"difficulty": "hard", "length": "long", "judge": True},
    ]
    scores = {s["task"]: s["score"] for s in breakdown(judged)}
    assert scores == {
        "overall": 75.0,
        "easy": 50.0,
        "hard": 100.0,
        "short": 100.0,
        "medium": 100.0,
        "long": 50.0,
    }


def test_end_to_end_batched_on_a_tiny_model(tiny_model_dir, data_file, tmp_path):
    out = tmp_path / "lb"
    result = evaluate(
        LongBenchV2Arguments(
            data=str(data_file),
            model=tiny_model_dir,
            max_new_tokens=4,
            dtype="float32",
            output_dir=str(out),
            max_input_tokens=1000,
            batch_size=2,
        )
    )
    results = json.loads((out / "results.json").read_text())
    assert results["benchmark"] == "longbench-v2"
    assert [s["task"] for s in results["scores"]] == ["overall", "easy", "hard", "short", "medium", "long"]
    assert all(s["length"] is None for s in results["scores"])
    assert results["summary"]["questions"] == 3 and results["summary"]["input_budget"] == 1000
    assert result["summary"]["average"] == results["scores"][0]["score"]
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [p["_id"] for p in predictions] == ["q0", "q1", "q2"] and all("response" in p for p in predictions)
