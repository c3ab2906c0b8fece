"""`make ablation-gpu` as a CPU dry run: each method's data, the same training on each, RULER, one table."""

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import ablation_gpu  # noqa: E402


def test_the_dry_run_trains_each_method_alike_and_writes_one_table(docs_file, tmp_path):
    out = tmp_path / "ablation"
    rows = ablation_gpu.main(
        ["--dry_run", "--roots", str(docs_file), "--methods", "concat", "nextlong", "--output_dir", str(out)]
    )
    assert [row["method"] for row in rows] == ["concat", "nextlong"]
    assert all(row["rows"] > 0 and row["tokens"] == 2 * 256 for row in rows)  # the same tokens for each
    for method in ("concat", "nextlong"):
        training = json.loads((out / f"model-{method}" / "trainer_state.json").read_text())
        assert training["global_step"] == 2
        results = json.loads((out / f"model-{method}" / "ruler" / "results.json").read_text())
        assert {(s["task"], s["length"]) for s in results["scores"]} == {("niah_single_1", 512)}
    table = (out / "ablation.md").read_text().splitlines()
    assert table[0] == "| method (shown as) | rows built | training tokens | RULER 512 | average |"
    assert table[2].startswith("| concat (concat) | ") and table[3].startswith("| nextlong (nextlong) | ")
    assert "RULER average" not in table[-1] and "Wikipedia-summary haystack" in table[-1]
