"""The model card: rendered from model_card/template.md with the run's facts and eval results tables."""

import json

import pytest

from hf_entropylong.train.modelcard import load_results, main, render_model_card

RUN = {
    "stage": "cpt",
    "base_model": "meta-llama/Meta-Llama-3-8B",
    "datasets": ["org/entropylong_128k"],
    "recipe": "recipes/llama3-8b/cpt/config_128k.yaml",
    "hardware": "8x H100 80GB (one node)",
    "overrides": {"rope_theta": {"old": 500000.0, "new": 200000000.0}},
    "max_seq_length": 131072,
    "output_dir": "outputs/llama3-8b-entropylong-128k",
    "repo_id": "org/llama3-8b-entropylong-128k",
    "model_name": "llama3-8b-entropylong-128k",
    "attn_implementation": "flash_attention_2",
    "steps": 1000,
    "tokens_seen": 4_194_304_000,
    "final_loss": 1.8765,
    "peft": None,
    "hyperparameters": {"learning rate": 4e-05, "warmup": "200 steps"},
}


def write_results(path, benchmark, scores, summary):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {"model": "org/m", "benchmark": benchmark, "config": {}, "scores": scores, "summary": summary}
        )
    )
    return path


def test_card_without_results():
    card = render_model_card(RUN)
    assert card.startswith("---\n") and "base_model: meta-llama/Meta-Llama-3-8B" in card
    assert "datasets:\n- org/entropylong_128k" in card
    assert "| `rope_theta` | 500000.0 | 200000000.0 |" in card
    assert "| tokens seen | 4,194,304,000 |" in card and "| sequence length | 131,072 |" in card
    assert "| hardware | 8x H100 80GB (one node) |" in card and "| learning rate | 4e-05 |" in card
    assert "No evaluation yet" in card


def test_card_results_tables(tmp_path):
    ruler = write_results(
        tmp_path / "ruler/results.json",
        "ruler",
        [
            {"task": "niah_single_1", "length": 65536, "score": 100.0},
            {"task": "niah_single_1", "length": 131072, "score": 97.5},
            {"task": "vt", "length": 131072, "score": 81.25},
        ],
        {"average": 92.9},
    )
    longbench = write_results(
        tmp_path / "lb/results.json",
        "longbench-v2",
        [{"task": "overall", "length": None, "score": 31.4}],
        {"average": 31.4},
    )
    card = render_model_card(RUN, [load_results(ruler), load_results(longbench)])
    assert "### RULER — org/m (average 92.9)" in card
    assert "| task | 64K | 128K | " in card
    assert "| niah_single_1 | 100.0 | 97.5 | " in card and "| vt | — | 81.2 | " in card
    assert "### LongBench v2 — org/m (average 31.4)" in card and "| overall | 31.4 | " in card
    assert "No evaluation yet" not in card


def test_rerender_after_eval(tmp_path):
    (tmp_path / "entropylong_training.json").write_text(json.dumps(RUN))
    results = write_results(
        tmp_path / "niah.json", "niah", [{"task": "niah", "length": 8192, "score": 50.0}], {}
    )
    main(["--model_dir", str(tmp_path), "--results", str(results)])
    assert "| niah | 50.0 | " in (tmp_path / "README.md").read_text()


def test_bad_results_file(tmp_path):
    bad = tmp_path / "results.json"
    bad.write_text(json.dumps({"model": "m", "benchmark": "ruler", "scores": [{"task": "vt"}]}))
    with pytest.raises(ValueError, match=r"results.json: scores\[0\]"):
        load_results(bad)
    bad.write_text(json.dumps({"model": "m", "benchmark": "ruler"}))
    with pytest.raises(ValueError, match="missing 'scores'"):
        load_results(bad)
    with pytest.raises(FileNotFoundError, match="entropylong_training.json"):
        main(["--model_dir", str(tmp_path)])
