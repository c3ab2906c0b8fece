"""`hf-entropylong eval ruler` on the embedded SmolLM2-135M at 1K and 2K tokens (1-3 minutes on 2 CPU cores)."""

import json

import pytest

from hf_entropylong.cli import main as cli_main


@pytest.mark.slow
def test_eval_ruler_on_smollm2(tmp_path, squad_file):
    out = tmp_path / "ruler"
    cli_main(
        [
            "eval",
            "ruler",
            "--lengths",
            "1024",
            "2048",
            "--samples",
            "1",
            "--tasks",
            "niah_single_1",
            "qa_1",
            "--squad_file",
            squad_file,
            "--max_gen_toks",
            "16",
            "--dtype",
            "float32",
            "--output_dir",
            str(out),
        ]
    )
    results = json.loads((out / "results.json").read_text())
    scores = {(s["task"], s["length"]): s["score"] for s in results["scores"]}
    assert len(scores) == 4
    # SmolLM2-135M finds a single needle in 1K tokens of noise
    assert scores[("niah_single_1", 1024)] == 100.0
    assert results["summary"]["average"] == pytest.approx(sum(scores.values()) / 4, abs=0.01)
