"""The model card of a training run: `model_card/template.md` rendered with huggingface_hub's `ModelCard`.

A run writes `entropylong_training.json` (base model, data, recipe, hardware, overrides, hyperparameters,
steps, tokens, final loss) next to the weights; the card is rendered from it plus zero or more `results.json`
files of `hf-entropylong eval …`, so it can be re-rendered after evaluation:

    python -m hf_entropylong.train.modelcard --model_dir outputs/llama3-8b-entropylong-128k \
        --results outputs/eval/ruler/results.json outputs/eval/longbench-v2/results.json

Each results file becomes one table: tasks as rows, context lengths as columns, and the summary line; and
`model-index` entries (huggingface_hub's `EvalResult`) in the card's YAML. A results file of another model is
refused. The YAML states only what is known: `base_model` is a Hub id (the embedded SmolLM2 is
`HuggingFaceTB/SmolLM2-135M-Instruct`; a local base counts when it was pushed; random weights have none), `license`
is the base model's (from its card), `datasets` are the Hub datasets trained on.
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..models import EMBEDDED_LM, is_embedded

TEMPLATE = Path(__file__).resolve().parent.parent / "templates" / "model_card.md"
RUN_FILE = "entropylong_training.json"
BENCHMARKS = {"ruler": "RULER", "niah": "Needle in a haystack", "longbench-v2": "LongBench v2"}
# The Hub dataset a benchmark's questions come from, where there is one (RULER and NIAH are generated locally).
BENCHMARK_DATASETS = {"longbench-v2": "THUDM/LongBench-v2"}
EMBEDDED_LM_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
EMBEDDED_LM_LICENSE = "apache-2.0"


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
    return {**data, "path": str(path)}


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


def _is_hub_id(name: str) -> bool:
    return name.count("/") == 1 and not is_embedded(name) and not Path(name).exists()


@functools.cache
def _hub_license(repo_id: str) -> str | None:
    """The licence on the Hub card of `repo_id`, or `None` offline or when the Hub does not answer."""
    from huggingface_hub import constants, model_info

    if constants.HF_HUB_OFFLINE:
        return None
    try:
        card_data = model_info(repo_id, timeout=10).card_data
    except Exception:  # an unreachable Hub, a gated or missing repo: the card then states no licence
        return None
    return getattr(card_data, "license", None)


def base_model_facts(run: dict[str, Any]) -> tuple[str | None, str | None]:
    """The base model's Hub id and licence, as far as they are known: `(None, None)` when they are not.

    A model built from a config with random weights (`init_from_config`) has no base model. The embedded SmolLM2 is
    a copy of `HuggingFaceTB/SmolLM2-135M-Instruct` (Apache-2.0). A local folder counts through what it says of
    itself: a run of this package (`entropylong_training.json`, Hub id when it was pushed) or a card's YAML.
    """
    base = run["base_model"]
    if run.get("init_from_config"):
        return None, None
    if base == EMBEDDED_LM:
        return EMBEDDED_LM_HUB_ID, EMBEDDED_LM_LICENSE
    if Path(base).is_dir():
        readme = Path(base) / "README.md"
        license_id = ModelCard.load(readme).data.license if readme.is_file() else None
        run_file = Path(base) / RUN_FILE
        repo_id = json.loads(run_file.read_text()).get("repo_id") if run_file.is_file() else None
        return repo_id, license_id
    if _is_hub_id(base):
        return base, _hub_license(base)
    return None, None


def check_results_model(data: dict[str, Any], run: dict[str, Any], path: str | Path = "results") -> None:
    """Refuse results of another model: `data["model"]` must name this run's output folder or Hub repo."""
    evaluated = str(data["model"])
    names = {run["output_dir"], run.get("repo_id")} - {None}
    if evaluated in names or Path(evaluated).resolve() == Path(run["output_dir"]).resolve():
        return
    raise ValueError(
        f"{path}: evaluates {evaluated!r}, not this model ({' or '.join(sorted(names))}); a model card shows only "
        "the results of its own model."
    )


def eval_results(data: dict[str, Any]) -> list[EvalResult]:
    """The `model-index` entries of one results file: one per task and context length."""
    benchmark = data["benchmark"]
    name = BENCHMARKS.get(benchmark, benchmark)
    return [
        EvalResult(
            task_type="text-generation",
            dataset_type=BENCHMARK_DATASETS.get(benchmark, benchmark),
            dataset_name=name,
            dataset_config=None if score.get("length") is None else str(score["length"]),
            task_name=f"{name} {score['task']}",
            metric_type="accuracy",
            metric_name=f"{score['task']} (%)",
            metric_value=float(score["score"]),
        )
        for score in data["scores"]
    ]


def render_model_card(
    run: dict[str, Any], results: list[dict[str, Any]] = (), template_path: Path = TEMPLATE
) -> str:
    """Render the card of a run (the content of `entropylong_training.json`) with eval `results` (loaded files).

    Raises:
        ValueError: a results file evaluates another model (see [`check_results_model`]).
    """
    for data in results:
        check_results_model(data, run, data.get("path", "results"))
    base_model, license_id = base_model_facts(run)
    hub_datasets = [d for d in run["datasets"] if _is_hub_id(d)]
    model_name = run.get("model_name") or Path(run["output_dir"]).name
    card_data = ModelCardData(
        base_model=base_model,
        datasets=hub_datasets or None,
        license=license_id,
        library_name="peft" if run.get("peft") else "transformers",
        pipeline_tag="text-generation",
        tags=["long-context", "entropylong", run["stage"], "trl"],
        model_name=model_name,
        eval_results=[entry for data in results for entry in eval_results(data)] or None,
    )
    card = ModelCard.from_template(
        card_data,
        template_path=str(template_path),
        stage_title={"cpt": "continued pretraining", "sft": "SFT"}[run["stage"]],
        results=[results_table(r) for r in results],
        base_model_id=base_model,
        license=license_id,
        **{**run, "model_name": model_name, "repo_id": run.get("repo_id") or run["output_dir"]},
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
