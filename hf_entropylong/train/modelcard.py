"""The model card of a training run: `model_card/template.md` rendered with huggingface_hub's `ModelCard`.

A run writes `entropylong_training.json` (base model, data, recipe, hardware, overrides, hyperparameters,
steps, tokens, final loss) next to the weights; the card is rendered from it plus zero or more `results.json`
files of `hf-entropylong eval …`, so it can be re-rendered after evaluation:

    python -m hf_entropylong.train.modelcard --model_dir outputs/llama3-8b-entropylong-128k \
        --results outputs/eval/ruler/results.json outputs/eval/longbench-v2/results.json

Each results file becomes one table: tasks as rows, context lengths as columns, and the summary line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

TEMPLATE = Path(__file__).resolve().parent.parent / "templates" / "model_card.md"
RUN_FILE = "entropylong_training.json"
BENCHMARKS = {"ruler": "RULER", "niah": "Needle in a haystack", "longbench-v2": "LongBench v2"}


def load_results(path: str | Path) -> dict[str, Any]:
    """Read one eval `results.json` and check it against the schema; errors name the file and field."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read eval results ({error}).") from error
    for key in ("model", "benchmark", "scores"):
        if key not in data:
            raise ValueError(f"{path}: missing {key!r}; expected an `hf-entropylong eval` results.json.")
    for i, score in enumerate(data["scores"]):
        if (
            not isinstance(score, dict)
            or "task" not in score
            or not isinstance(score.get("score"), (int, float))
        ):
            raise ValueError(f"{path}: scores[{i}] must have 'task' and a numeric 'score', got {score!r}.")
    return data


def results_table(data: dict[str, Any]) -> dict[str, Any]:
    """Pivot one results file into `{benchmark, lengths, rows: {task: {length: "score"}}, summary_text}`."""
    lengths = sorted({s.get("length") for s in data["scores"]}, key=lambda n: (n is None, n or 0))
    labels = {n: ("score" if n is None else f"{n // 1024}K" if n % 1024 == 0 else str(n)) for n in lengths}
    rows: dict[str, dict[str, str]] = {}
    for score in data["scores"]:
        rows.setdefault(score["task"], {})[labels[score.get("length")]] = f"{score['score']:.1f}"
    summary = data.get("summary") or {}
    summary_text = ", ".join(
        f"{key} {value:.1f}" for key, value in summary.items() if isinstance(value, (int, float))
    )
    name = BENCHMARKS.get(data["benchmark"], data["benchmark"])
    return {
        "benchmark": f"{name} — {data['model']}",
        "lengths": [labels[n] for n in lengths],
        "rows": rows,
        "summary_text": summary_text,
    }


def render_model_card(
    run: dict[str, Any], results: list[dict[str, Any]] = (), template_path: Path = TEMPLATE
) -> str:
    """Render the card of a run (the content of `entropylong_training.json`) with eval `results` (loaded files)."""
    card_data = ModelCardData(
        base_model=run["base_model"] if "/" in run["base_model"] else None,
        datasets=[d for d in run["datasets"] if "/" in d and not Path(d).exists()] or None,
        library_name="peft" if run.get("peft") else "transformers",
        pipeline_tag="text-generation",
        tags=["long-context", "entropylong", run["stage"], "trl"],
    )
    card = ModelCard.from_template(
        card_data,
        template_path=str(template_path),
        stage_title={"cpt": "continued pretraining", "sft": "SFT"}[run["stage"]],
        results=[results_table(r) for r in results],
        **{**run, "repo_id": run.get("repo_id") or run["output_dir"]},
    )
    return str(card)


def write_model_card(model_dir: str | Path, result_files: list[str] = ()) -> Path:
    """Render the card of the run saved in `model_dir` into `model_dir/README.md` and return its path."""
    model_dir = Path(model_dir)
    run_file = model_dir / RUN_FILE
    if not run_file.exists():
        raise FileNotFoundError(
            f"{run_file} not found: is {model_dir} the output_dir of `hf-entropylong train`?"
        )
    run = json.loads(run_file.read_text())
    card = render_model_card(run, [load_results(p) for p in result_files])
    readme = model_dir / "README.md"
    readme.write_text(card)
    return readme


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m hf_entropylong.train.modelcard", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--model_dir", required=True, help="output_dir of a training run")
    parser.add_argument("--results", nargs="*", default=[], help="results.json files of eval runs")
    args = parser.parse_args(argv)
    print(f"wrote {write_model_card(args.model_dir, args.results)}")


if __name__ == "__main__":
    from hf_entropylong import cli

    cli.run(main)
