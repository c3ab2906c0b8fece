"""`eval ruler` / `eval niah` through lm-eval: window checks, QA handling, results, the heatmap, the task folder."""

import json

import pytest

from hf_entropylong.cli import main as cli_main
from hf_entropylong.eval import niah, ruler
from hf_entropylong.eval.chat import use_chat_prompt
from hf_entropylong.eval.ruler import RulerArguments, evaluate, parse_args, select_tasks
from hf_entropylong.eval.ruler_tasks import (
    TASK_NAMES,
    count_tokens,
    lm_eval_prompt,
    tokens_to_generate,
)
from hf_entropylong.eval.runner import check_window, load_lm
from hf_entropylong.eval.scoring import plot_heatmap, score_sample
from hf_entropylong.eval.task_files import TASKS_DIR, render, task_files
from hf_entropylong.models import EMBEDDED_LM, context_window


def test_window_and_length_check(tiny_model_dir):
    assert context_window(EMBEDDED_LM) == 8192
    assert check_window(tiny_model_dir, [1024, 4096]) == 4096
    assert check_window(tiny_model_dir, [8192], max_length=8192) == 8192  # a window the config understates
    with pytest.raises(ValueError, match=r"Length\(s\) \[8192\] exceed the window of .* \(4096 tokens\)"):
        check_window(tiny_model_dir, [1024, 8192])
    with pytest.raises(ValueError, match="positive"):
        check_window(tiny_model_dir, [0])
    with pytest.raises(ValueError, match="No lengths"):
        check_window(tiny_model_dir, [])


def test_length_over_the_window_fails_before_loading(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(ruler, "load_lm", lambda *a, **k: pytest.fail("model loaded despite a bad length"))
    with pytest.raises(ValueError, match="exceed the window"):
        evaluate(RulerArguments(model=tiny_model_dir, lengths=[2048, 16384], output_dir=str(tmp_path)))
    with pytest.raises(ValueError, match=r"--tasks: unknown RULER task\(s\) \['niah'\]"):
        RulerArguments(model=tiny_model_dir, tasks=["niah"], output_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"--depths are percents from 0 to 100"):
        RulerArguments(model=tiny_model_dir, depths=[50, 120], output_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"--samples must be positive, got 0"):
        RulerArguments(samples=0)
    # `eval niah` defaults to lengths up to 8192: over the tiny model's 4096 window
    with pytest.raises(ValueError, match=r"Length\(s\) \[8192\] exceed"):
        niah.main(["--model", tiny_model_dir])


def test_niah_is_ruler_with_other_defaults(tmp_path):
    config = tmp_path / "niah.yaml"
    config.write_text("samples: 2\n")
    args = parse_args(["--config", str(config), "--lengths", "512"], niah.NIAH_DEFAULTS)
    assert args.depths == list(range(0, 101, 10)) and args.output_dir == "outputs/eval/niah"
    assert args.samples == 2 and args.lengths == [512]  # the config file, then flags, override the defaults
    assert parse_args([]).depths is None and parse_args([]).tasks == list(TASK_NAMES)


def test_qa_files_missing_or_malformed(tiny_model_dir, tmp_path):
    tasks, skipped, metadata = select_tasks(RulerArguments(tasks=["vt", "qa_1", "qa_2"]))
    assert tasks == ["vt"] and skipped == ["qa_1", "qa_2"] and metadata == {}
    with pytest.raises(FileNotFoundError, match="SQuAD file 'nowhere.json' not found"):
        select_tasks(RulerArguments(tasks=["qa_1"], squad_file="nowhere.json"))
    with pytest.raises(ValueError, match="No task left"):
        evaluate(
            RulerArguments(model=tiny_model_dir, tasks=["qa_2"], lengths=[512], output_dir=str(tmp_path))
        )


def test_ruler_end_to_end_on_a_tiny_model(tiny_model_dir, squad_file, tmp_path, capsys):
    out = tmp_path / "ruler"
    cli_main(
        [
            "eval",
            "ruler",
            "--model",
            tiny_model_dir,
            "--lengths",
            "512",
            "768",
            "--samples",
            "2",
            "--tasks",
            "niah_single_1",
            "fwe",
            "qa_1",
            "--squad_file",
            squad_file,
            "--max_gen_toks",
            "4",
            "--dtype",
            "float32",
            "--batch_size",
            "2",
            "--output_dir",
            str(out),
        ]
    )
    results = json.loads((out / "results.json").read_text())
    assert results["benchmark"] == "ruler" and results["model"] == tiny_model_dir
    assert {(s["task"], s["length"]) for s in results["scores"]} == {
        (t, n) for t in ("niah_single_1", "fwe", "qa_1") for n in (512, 768)
    }
    assert all(0 <= s["score"] <= 100 for s in results["scores"])
    assert results["summary"]["samples"] == 12 and results["summary"]["skipped_tasks"] == []
    assert results["summary"]["haystack"] == "embedded:wiki-summaries"
    assert results["summary"]["average_label"] == (
        "average of 3 of RULER's 13 tasks (without niah_single_2, niah_single_3, niah_multikey_1, "
        "niah_multikey_2, niah_multikey_3, niah_multivalue, niah_multiquery, vt, cwe, qa_2) at 512, 768, "
        "on the Wikipedia-summary haystack (not RULER's essays)"
    )
    assert "RULER average" not in capsys.readouterr().out  # the default haystack: never unqualified
    assert results["summary"]["average_ci95"] > 10  # 2 samples per cell
    assert set(results["summary"]["per_length"]) == {"512", "768"}
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 12 and all(p["length"] <= p["max_length"] for p in predictions)
    # the per-sample score is lm-eval's, and it is RULER's string matching of the prediction
    metric = {"niah_single_1": "all", "fwe": "all", "qa_1": "part"}
    assert all(
        p["score"] == score_sample(p["prediction"], p["outputs"], metric[p["task"]]) for p in predictions
    )
    table = {(s["task"], s["length"]): s["score"] for s in results["scores"]}
    fwe = {
        n: [p["score"] for p in predictions if p["task"] == "fwe" and p["max_length"] == n]
        for n in (512, 768)
    }
    assert table[("fwe", 512)] == round(100 * sum(fwe[512]) / 2, 2)
    assert "| niah_single_1 |" in (out / "results.md").read_text()
    lm_eval_results = json.loads((out / "lm_eval_results.json").read_text())["results"]
    assert lm_eval_results["entropylong_fwe"]["score,none"] == pytest.approx(25 * sum(fwe[512] + fwe[768]))


def test_niah_heatmap_end_to_end(tiny_model_dir, tmp_path):
    out = tmp_path / "niah"
    cli_main(
        [
            "eval",
            "niah",
            "--model",
            tiny_model_dir,
            "--lengths",
            "512",
            "1024",
            "--depths",
            "0",
            "50",
            "100",
            "--samples",
            "1",
            "--max_gen_toks",
            "2",
            "--dtype",
            "float32",
            "--output_dir",
            str(out),
        ]
    )
    png = (out / "niah_heatmap.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5_000
    results = json.loads((out / "results.json").read_text())
    assert results["benchmark"] == "niah" and results["config"]["depths"] == [0, 50, 100]
    assert [(s["task"], s["length"]) for s in results["scores"]] == [
        (f"depth_{d}", n) for d in (0, 50, 100) for n in (512, 1024)
    ]


def test_plot_heatmap_writes_a_png(tmp_path):
    cells = [{"depth": d, "length": n, "score": float(d)} for d in (0, 50, 100) for n in (1024, 2048)]
    path = plot_heatmap(cells, tmp_path / "sub" / "heat.png", "title")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    width, height = Image.open(path).size
    assert width >= 600 and height >= 300


def test_task_files_are_written_from_python():
    files = task_files()
    assert {path.name for path in TASKS_DIR.iterdir() if path.suffix != ".py"} == set(files)
    for name, config in files.items():
        assert (TASKS_DIR / name).read_text() == render(config), (
            f"{name}: run python -m hf_entropylong.eval.task_files"
        )
    assert files["entropylong_vt.yaml"]["generation_kwargs"]["max_gen_toks"] == tokens_to_generate("vt") == 30
    assert files["entropylong_ruler.yaml"]["task"] == [f"entropylong_{t}" for t in TASK_NAMES]


def test_lm_eval_task_folder_lists_the_suite():
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False)
    names = set(manager.all_tasks)
    assert {f"entropylong_{t}" for t in TASK_NAMES} <= names
    assert {"entropylong_ruler", "entropylong_ruler_synthetic", "entropylong_niah"} <= names


@pytest.mark.parametrize("chat_template", [False, True])
def test_lengths_count_the_prompts_lm_eval_sends(tiny_model_dir, tokenizer, squad_file, chat_template):
    from lm_eval.tasks import TaskManager

    lm, _ = load_lm(tiny_model_dir, "float32", 1, 4096, None)
    use_chat_prompt(lm)  # what `eval ruler --chat_template` does: no default system prompt
    metadata = {
        "tokenizer": tiny_model_dir,
        "max_seq_lengths": [1024],  # vt's example alone takes up to 500 tokens
        "num_samples": 2,
        "chat_template": chat_template,
        "squad_file": squad_file,
    }
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata=metadata)
    names = ["entropylong_niah_single_1", "entropylong_vt", "entropylong_qa_1"]
    for task in manager.load(names)["tasks"].values():
        task.build_all_requests(
            apply_chat_template=chat_template, fewshot_as_multiturn=True, chat_template=lm.apply_chat_template
        )
        for instance in task.instances:
            doc, prompt = instance.doc, instance.arguments[0]
            assert prompt == lm_eval_prompt(tokenizer, doc["input"], doc["gen_prefix"], chat_template)
            assert count_tokens(tokenizer, prompt) + tokens_to_generate(doc["task"]) == doc["length"] <= 1024
            assert prompt.startswith("<|im_start|>user\n") == chat_template
            assert prompt.endswith(
                " " + doc["gen_prefix"] if not chat_template else "assistant\n" + doc["gen_prefix"]
            )


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
