"""`hf-entropylong eval short`: the paper's short-text table (§6.5), a model beside its base, via lm-eval.

    hf-entropylong eval short --model outputs/cpt/final --base_model meta-llama/Meta-Llama-3-8B

Long-context training should not cost short-text ability: the EntropyLong paper reports arc_c, arc_e,
hellaswag, piqa, logiqa and winogrande for the base model and the trained one (61.77 vs 61.83 on
average). This command runs those six lm-evaluation-harness tasks (`arc_challenge`, `arc_easy`,
`hellaswag`, `piqa`, `logiqa`, `winogrande`; lm-eval's prompts and zero-shot default, log-likelihood
scoring) on both models with the same settings, and prints one row per model with the average and the
difference. The paper does not say which accuracy it reports, but its base-model row matches Llama-3-8B's
zero-shot `acc` (hellaswag 60.13 is `acc`; `acc_norm` is about 79), so `acc` is the default and the table in
`acc_norm` (length-normalised, `acc` where a task has none: winogrande) is printed beside it; `--metric acc_norm`
makes that one the headline.

The tasks download their datasets from the Hugging Face Hub on first use (then the `datasets` cache
serves them); `--include_path` adds a folder of lm-eval task files, so any task, including a local one,
can take part (`--tasks`). `--limit N` evaluates the first N documents of each task (a smoke run, not
comparable). Output: `<output_dir>/results.json` (the shared schema: the model's score per task; `summary` holds the
averages and the base model's scores), `results.md` (the table) and lm-eval's own results per model
(`lm_eval_0.json`, ...).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..models import context_window
from .runner import EvalModelArguments, load_lm
from .scoring import write_results

SHORT_TASKS = ("arc_challenge", "arc_easy", "hellaswag", "piqa", "logiqa", "winogrande")
PAPER_NAMES = {"arc_challenge": "arc_c", "arc_easy": "arc_e"}


@dataclass
class ShortTextArguments(EvalModelArguments):
    """Options of `hf-entropylong eval short` (YAML via --config; flags override)."""

    base_model: str | None = field(default=None, metadata={"help": "The model before long-context training."})
    tasks: list[str] = field(default_factory=lambda: list(SHORT_TASKS), metadata={"help": "lm-eval tasks."})
    metric: str = field(
        default="acc",
        metadata={
            "help": "The headline accuracy: acc (the paper's) or acc_norm (acc where a task has none); the other "
            "is printed beside it."
        },
    )
    num_fewshot: int | None = field(
        default=None, metadata={"help": "Few-shot examples (lm-eval's default: 0)."}
    )
    limit: int | None = field(default=None, metadata={"help": "Documents per task (smoke runs only)."})
    include_path: str | None = field(default=None, metadata={"help": "A folder of extra lm-eval task files."})
    seed: int = field(default=0, metadata={"help": "lm-eval's random seed (its default: 0)."})
    output_dir: str = field(default="outputs/eval/short", metadata={"help": "Where results are written."})

    def __post_init__(self):
        self.check_positive("limit")
        if self.metric not in ("acc", "acc_norm"):
            raise ValueError(f"--metric must be acc or acc_norm, got {self.metric!r}.")
        if not self.tasks:
            raise ValueError("--tasks: give at least one lm-eval task.")


def task_score(task_results: dict, metric: str) -> float:
    """`metric` (× 100) from one task's lm-eval results, `acc` when the task has no `acc_norm`."""
    for name in (metric, "acc"):
        if f"{name},none" in task_results:
            return round(100 * task_results[f"{name},none"], 2)
    raise ValueError(f"lm-eval reported no accuracy for this task (metrics: {sorted(task_results)}).")


METRICS = ("acc", "acc_norm")


def run_model(name: str, args: ShortTextArguments) -> tuple[dict[str, dict[str, float]], dict]:
    """Scores of one model on `args.tasks` in each of `METRICS` (metric → task → score), and lm-eval's results."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    window = context_window(name, args.model_max_length)
    lm, _ = load_lm(name, args.dtype, args.batch_size, window, args.attn_implementation)
    results = simple_evaluate(
        model=lm,
        tasks=list(args.tasks),
        task_manager=TaskManager(include_path=args.include_path),
        num_fewshot=args.num_fewshot,
        limit=args.limit,
        bootstrap_iters=0,
        random_seed=args.seed,
    )
    scores = {
        metric: {task: task_score(results["results"][task], metric) for task in args.tasks}
        for metric in METRICS
    }
    return scores, results


def paper_table(scores: dict[str, dict[str, float]], tasks: list[str]) -> str:
    """Markdown: one row per model, one column per task (the paper's names), the average; then the difference."""
    header = ["model", *(PAPER_NAMES.get(task, task) for task in tasks), "average"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    rows = []
    for model, by_task in scores.items():
        values = [by_task[task] for task in tasks] + [sum(by_task.values()) / len(by_task)]
        rows.append(values)
        lines.append("| " + " | ".join([model, *(f"{v:.2f}" for v in values)]) + " |")
    if len(rows) == 2:
        lines.append(
            "| difference | " + " | ".join(f"{b - a:+.2f}" for a, b in zip(*rows, strict=True)) + " |"
        )
    return "\n".join(lines)


def evaluate(args: ShortTextArguments) -> dict:
    """Run the tasks on the base model (if given) then the model; write and print the table."""
    models = [m for m in (args.base_model, args.model) if m is not None]
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    by_metric: dict[str, dict[str, dict[str, float]]] = {metric: {} for metric in METRICS}
    for i, name in enumerate(models):
        per_metric, raw = run_model(name, args)
        for metric, scores in per_metric.items():
            by_metric[metric][name] = scores
        kept = {key: raw[key] for key in ("results", "n-samples", "versions", "configs") if key in raw}
        (output / f"lm_eval_{i}.json").write_text(json.dumps(kept, indent=2, default=str) + "\n")
    other = next(metric for metric in METRICS if metric != args.metric)
    scores = by_metric[args.metric]
    averages = {name: round(sum(s.values()) / len(s), 2) for name, s in scores.items()}
    table = (
        f"{args.metric}:\n\n{paper_table(scores, list(args.tasks))}\n\n"
        f"{other} (beside it):\n\n{paper_table(by_metric[other], list(args.tasks))}"
    )
    summary = {
        "average": averages[args.model],
        "metric": args.metric,
        "other_metric": other,
        "other_scores": by_metric[other][args.model],
        "other_average": round(sum(by_metric[other][args.model].values()) / len(args.tasks), 2),
    }
    if args.base_model is not None:
        summary |= {
            "base_model": args.base_model,
            "base_average": averages[args.base_model],
            "base_scores": scores[args.base_model],
        }
    result = {
        "scores": [{"task": task, "score": score} for task, score in scores[args.model].items()],
        "summary": summary,
    }
    write_results(
        args, "short-text", context_window(args.model, args.model_max_length), result, markdown=table
    )
    print(table)
    return result


def parse_args(argv: list[str] | None = None) -> ShortTextArguments:
    from trl import TrlParser

    (args,) = TrlParser((ShortTextArguments,)).parse_args_and_config(args=argv)
    return args


def main(argv: list[str] | None = None) -> dict:
    return evaluate(parse_args(argv))


if __name__ == "__main__":
    from hf_entropylong import cli

    cli.run(main)
