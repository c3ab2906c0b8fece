"""`eval short`: the short-text table of a model and its base, on a local lm-eval multiple-choice task."""

import json

import pytest
from tiny_models import tiny_llama

from hf_entropylong.cli import main as cli_main
from hf_entropylong.eval.short_text import SHORT_TASKS, ShortTextArguments, paper_table, task_score

QUESTIONS = [
    ("The sky on a clear day is", ["blue", "green", "loud", "square"], 0),
    ("Ice is water that is", ["boiling", "frozen", "purple", "angry"], 1),
    ("A cat says", ["moo", "quack", "meow", "oink"], 2),
    ("The sun rises in the", ["west", "north", "south", "east"], 3),
    ("Two plus two is", ["four", "five", "six", "seven"], 0),
    ("Fish live in", ["trees", "water", "clouds", "sand"], 1),
]


@pytest.fixture
def fixture_task(tmp_path):
    """A four-choice lm-eval task over a local JSON-lines file (what arc/piqa/... are, minus the Hub)."""
    folder = tmp_path / "tasks"
    folder.mkdir()
    data = folder / "fixture_mc.jsonl"
    data.write_text(
        "".join(json.dumps({"question": q, "choices": c, "label": a}) + "\n" for q, c, a in QUESTIONS)
    )
    (folder / "fixture_mc.yaml").write_text(
        "task: fixture_mc\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        "output_type: multiple_choice\n"
        "test_split: test\n"
        'doc_to_text: "Question: {{question}}\\nAnswer:"\n'
        "doc_to_target: label\n"
        'doc_to_choice: "{{choices}}"\n'
        "metric_list:\n"
        "  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
        "  - metric: acc_norm\n    aggregation: mean\n    higher_is_better: true\n"
    )
    return str(folder)


def test_short_text_table_for_a_model_and_its_base(tiny_model_dir, tokenizer, fixture_task, tmp_path, capsys):
    base = tmp_path / "base"
    tiny_llama(vocab_size=len(tokenizer), max_position_embeddings=4096, hidden_size=48).save_pretrained(base)
    tokenizer.save_pretrained(base)
    out = tmp_path / "short"
    cli_main(
        ["eval", "short", "--model", tiny_model_dir, "--base_model", str(base), "--tasks", "fixture_mc"]
        + ["--include_path", fixture_task, "--dtype", "float32", "--output_dir", str(out)]
    )
    table = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert results["benchmark"] == "short-text" and results["model"] == tiny_model_dir
    (score,) = results["scores"]
    base_score = results["summary"]["base_scores"]["fixture_mc"]
    for i, value in ((1, score["score"]), (0, base_score)):
        lm_eval_results = json.loads((out / f"lm_eval_{i}.json").read_text())["results"]["fixture_mc"]
        assert value == round(100 * lm_eval_results["acc,none"], 2)  # the paper's accuracy by default
        assert round(value * len(QUESTIONS) / 100) * 100 / len(QUESTIONS) == pytest.approx(value, abs=0.01)
    assert f"| {base} | {base_score:.2f} | {base_score:.2f} |" in table
    assert f"| difference | {score['score'] - base_score:+.2f} |" in table
    assert results["summary"]["base_average"] == base_score and results["summary"]["metric"] == "acc"
    lm_eval_results = json.loads((out / "lm_eval_1.json").read_text())["results"]["fixture_mc"]
    normalised = round(100 * lm_eval_results["acc_norm,none"], 2)
    assert results["summary"]["other_metric"] == "acc_norm"
    assert results["summary"]["other_scores"] == {"fixture_mc": normalised}  # acc_norm beside it
    assert table.index("acc:") < table.index("acc_norm (beside it):")
    assert (
        f"| {tiny_model_dir} | {normalised:.2f} | {normalised:.2f} |"
        in table.split("acc_norm (beside it):")[1]
    )


def test_paper_table_and_metric_choice():
    scores = {"base": dict.fromkeys(SHORT_TASKS, 60.0), "ours": dict.fromkeys(SHORT_TASKS, 61.0)}
    table = paper_table(scores, list(SHORT_TASKS))
    assert (
        table.splitlines()[0]
        == "| model | arc_c | arc_e | hellaswag | piqa | logiqa | winogrande | average |"
    )
    assert table.splitlines()[-1] == "| difference | +1.00 | +1.00 | +1.00 | +1.00 | +1.00 | +1.00 | +1.00 |"
    assert task_score({"acc,none": 0.5, "acc_norm,none": 0.625}, "acc_norm") == 62.5
    assert task_score({"acc,none": 0.5}, "acc_norm") == 50.0  # winogrande has no acc_norm
    with pytest.raises(ValueError, match="no accuracy"):
        task_score({"exact_match,none": 0.5}, "acc")
    with pytest.raises(ValueError, match="--metric must be acc or acc_norm"):
        ShortTextArguments(metric="f1")
    assert ShortTextArguments().tasks == list(SHORT_TASKS)
