"""The model card: rendered from model_card/template.md with the run's facts and eval results tables; its YAML
says only what is known and parses with huggingface_hub's card classes (the Hub's metadata schema)."""

import json

import pytest
from huggingface_hub import ModelCard

from hf_entropylong.train.modelcard import RUN_FILE, load_results, main, render_model_card

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


def write_results(path, benchmark, scores, summary, model=RUN["repo_id"]):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {"model": model, "benchmark": benchmark, "config": {}, "scores": scores, "summary": summary}
        )
    )
    return path


def card_data(card: str):
    return ModelCard(card, ignore_metadata_errors=False).data


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
    assert "### RULER — org/llama3-8b-entropylong-128k (average 92.9)" in card
    assert "| task | 64K | 128K | " in card
    assert "| niah_single_1 | 100.0 | 97.5 | " in card and "| vt | — | 81.2 | " in card
    assert "### LongBench v2 — org/llama3-8b-entropylong-128k (average 31.4)" in card
    assert "| overall | 31.4 | " in card and "No evaluation yet" not in card
    data = card_data(card)  # model-index parsed back into huggingface_hub's EvalResult
    assert data.model_name == "llama3-8b-entropylong-128k" and len(data.eval_results) == 4
    vt, overall = data.eval_results[2], data.eval_results[3]
    assert (vt.dataset_name, vt.dataset_config, vt.metric_value) == ("RULER", "131072", 81.25)
    assert (overall.dataset_type, overall.dataset_config, overall.metric_value) == (
        "THUDM/LongBench-v2",
        None,
        31.4,
    )


def test_rerender_after_eval(tmp_path):
    (tmp_path / "entropylong_training.json").write_text(json.dumps({**RUN, "output_dir": str(tmp_path)}))
    results = write_results(
        tmp_path / "niah.json",
        "niah",
        [{"task": "niah", "length": 8192, "score": 50.0}],
        {},
        model=str(tmp_path),
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


def test_results_of_another_model_are_refused(tmp_path):
    other = write_results(
        tmp_path / "r.json", "niah", [{"task": "niah", "length": 8, "score": 1.0}], {}, "org/base"
    )
    with pytest.raises(ValueError, match=r"r.json: evaluates 'org/base', not this model"):
        render_model_card(RUN, [load_results(other)])


def test_hub_metadata_is_only_what_is_known(tmp_path):
    paper = card_data(render_model_card(RUN))
    assert paper.base_model == "meta-llama/Meta-Llama-3-8B" and paper.datasets == ["org/entropylong_128k"]
    assert paper.license is None  # offline: the base model's card cannot be read, so no licence is claimed

    embedded = {**RUN, "base_model": "embedded:SmolLM2-135M-Instruct", "datasets": [str(tmp_path)]}
    data = card_data(render_model_card(embedded))
    assert (data.base_model, data.license) == ("HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0")
    assert data.datasets is None  # a local folder is no Hub dataset

    random_init = card_data(render_model_card({**embedded, "init_from_config": True}))
    assert random_init.base_model is None and random_init.license is None

    # LoRA on a local model trained by this package: its Hub id (once pushed) and licence come from its files.
    base = tmp_path / "tiny-cpt"
    base.mkdir()
    (base / RUN_FILE).write_text(json.dumps({**embedded, "repo_id": "org/tiny-cpt"}))
    (base / "README.md").write_text(render_model_card(embedded))
    lora = {**RUN, "base_model": str(base), "peft": {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj"]}}
    card = render_model_card(lora)
    assert (card_data(card).base_model, card_data(card).license) == ("org/tiny-cpt", "apache-2.0")
    assert (
        "AutoPeftModelForCausalLM" in card
        and "flash_attention_2" not in card.split("```python")[1].split("```")[0]
    )
    (base / RUN_FILE).write_text(json.dumps({**embedded, "repo_id": None}))
    assert card_data(render_model_card(lora)).base_model is None  # never pushed: no Hub id to name
