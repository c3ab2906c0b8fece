"""`eval ruler` / `eval niah` through lm-eval: window checks, QA handling, results files, the heatmap, the task folder."""

import json

import pytest

from hf_entropylong.cli import main as cli_main
from hf_entropylong.eval import ruler
from hf_entropylong.eval.niah import plot_heatmap
from hf_entropylong.eval.ruler import RulerArguments, evaluate
from hf_entropylong.eval.runner import TASKS_DIR, check_lengths, model_window
from hf_entropylong.models import EMBEDDED_LM


def test_model_window_and_length_check(tiny_model_dir):
    assert model_window(EMBEDDED_LM) == 8192
    assert model_window(tiny_model_dir) == 4096
    check_lengths([1024, 4096], "m", 4096)
    with pytest.raises(ValueError, match=r"Length\(s\) \[8192\] exceed the window of m \(4096 tokens\)"):
        check_lengths([1024, 8192], "m", 4096)
    with pytest.raises(ValueError, match="positive"):
        check_lengths([0], "m", 4096)


def test_length_over_the_window_fails_before_loading(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(ruler, "load_lm", lambda *a, **k: pytest.fail("model loaded despite a bad length"))
    with pytest.raises(ValueError, match="exceed the window"):
        evaluate(RulerArguments(model=tiny_model_dir, lengths=[2048, 16384], output_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="Unknown RULER task"):
        evaluate(RulerArguments(model=tiny_model_dir, tasks=["niah"], output_dir=str(tmp_path)))


def test_qa_files_missing_or_malformed(tiny_model_dir, tmp_path):
    tasks, skipped, metadata = ruler._qa_files(RulerArguments(tasks=["vt", "qa_1", "qa_2"]))
    assert tasks == ["vt"] and skipped == ["qa_1", "qa_2"] and metadata == {}
    with pytest.raises(FileNotFoundError, match="SQuAD file 'nowhere.json' not found"):
        ruler._qa_files(RulerArguments(tasks=["qa_1"], squad_file="nowhere.json"))
    with pytest.raises(ValueError, match="No task left"):
        evaluate(RulerArguments(model=tiny_model_dir, tasks=["qa_2"], lengths=[512], output_dir=str(tmp_path)))


def test_ruler_end_to_end_on_a_tiny_model(tiny_model_dir, squad_file, tmp_path):
    out = tmp_path / "ruler"
    cli_main([
        "eval", "ruler", "--model", tiny_model_dir, "--lengths", "512", "768", "--samples", "2",
        "--tasks", "niah_single_1", "fwe", "qa_1", "--squad_file", squad_file, "--max_gen_toks", "4",
        "--dtype", "float32", "--batch_size", "2", "--output_dir", str(out),
    ])
    results = json.loads((out / "results.json").read_text())
    assert results["benchmark"] == "ruler" and results["model"] == tiny_model_dir
    assert {(s["task"], s["length"]) for s in results["scores"]} == {
        (t, n) for t in ("niah_single_1", "fwe", "qa_1") for n in (512, 768)
    }
    assert all(0 <= s["score"] <= 100 for s in results["scores"])
    assert results["summary"]["samples"] == 12 and results["summary"]["skipped_tasks"] == []
    assert set(results["summary"]["per_length"]) == {"512", "768"}
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 12 and all(p["length"] <= p["max_length"] for p in predictions)
    assert "| niah_single_1 |" in (out / "results.md").read_text()
    assert "entropylong_fwe" in json.loads((out / "lm_eval_results.json").read_text())["results"]


def test_niah_heatmap_end_to_end(tiny_model_dir, tmp_path):
    out = tmp_path / "niah"
    cli_main([
        "eval", "niah", "--model", tiny_model_dir, "--lengths", "512", "1024", "--depths", "0", "50", "100",
        "--samples", "1", "--max_gen_toks", "2", "--dtype", "float32", "--output_dir", str(out),
    ])
    png = (out / "niah_heatmap.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5_000
    results = json.loads((out / "results.json").read_text())
    assert results["benchmark"] == "niah"
    assert {(s["task"], s["length"]) for s in results["scores"]} == {
        (f"depth_{d}", n) for d in (0, 50, 100) for n in (512, 1024)
    }


def test_plot_heatmap_writes_a_png(tmp_path):
    cells = [{"depth": d, "length": n, "score": float(d)} for d in (0, 50, 100) for n in (1024, 2048)]
    path = plot_heatmap(cells, tmp_path / "sub" / "heat.png", "title")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    width, height = Image.open(path).size
    assert width >= 600 and height >= 300


def test_lm_eval_task_folder_lists_the_suite():
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False)
    names = set(manager.all_tasks)
    expected = {f"entropylong_{t}" for t in ruler.TASK_NAMES}
    assert expected <= names
    assert {"entropylong_ruler", "entropylong_ruler_synthetic", "entropylong_niah"} <= names


def test_lm_eval_glue_metrics():
    from hf_entropylong.eval.lm_eval_tasks import utils

    doc = {"outputs": ["111", "222"], "metric": "all", "max_length": 2048}
    metrics = utils.process_results(doc, [" 111 and 333"])
    assert metrics["score"] == 0.5 and metrics["2048"] == 0.5 and metrics["4096"] == -1.0
    assert utils.aggregate([0.5, -1.0, 1.0]) == 75.0 and utils.aggregate([-1.0]) == -1.0
    with pytest.raises(ValueError, match="squad_file"):
        utils.load_dataset("qa_1", pretrained=EMBEDDED_LM, max_seq_lengths=[1024])
    with pytest.raises(ValueError, match="exceed the window"):
        utils.load_dataset("vt", pretrained=EMBEDDED_LM, max_seq_lengths=[16384])
