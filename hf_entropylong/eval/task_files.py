"""The lm-eval task folder `lm_eval_tasks/`, written from `ruler_tasks`, so each constant has one home.

RULER's generation budgets (`ruler_tasks.TOKENS_TO_GENERATE`), the task list (`ruler_tasks.TASK_NAMES`)
and the per-length metrics (`METRIC_LENGTHS`) live in Python; the YAML files lm-eval reads are rendered
from them. The shared template tells lm-eval to render each prompt itself: `doc_to_text` is the task
text, `gen_prefix` RULER's answer prefix, joined by the target delimiter " " (or through the chat template
with `--apply_chat_template`). After changing a constant, rewrite the folder (a test fails until then):

    python -m hf_entropylong.eval.task_files
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ..paths import TASKS_DIR
from .ruler_constants import HEATMAP_TASK, TASK_NAMES, tokens_to_generate

TEMPLATE = "_ruler_template_yaml"
HEATMAP = "entropylong_niah"
METRIC_LENGTHS = (1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072)  # a metric each, for plain lm_eval
HEADER = (
    "# Written by `python -m hf_entropylong.eval.task_files` from ruler_tasks.py: edit there, not here.\n"
)


def task_name(ruler_task: str) -> str:
    """The lm-eval name of a RULER task, e.g. `entropylong_vt`."""
    return f"entropylong_{ruler_task}"


class _Function(str):
    """A `!function utils.<name>` reference to the glue module, as lm-eval's task files write it."""


class _TaskFileDumper(yaml.SafeDumper):
    pass


_TaskFileDumper.add_representer(_Function, lambda dumper, name: dumper.represent_scalar("!function", name))


def _greedy(ruler_task: str) -> dict:
    return {
        "do_sample": False,
        "temperature": 0.0,
        "max_gen_toks": tokens_to_generate(ruler_task),
        "until": [],
    }


def _group(name: str, ruler_tasks: list[str]) -> dict:
    return {
        "group": name,
        "task": [task_name(task) for task in ruler_tasks],
        "aggregate_metric_list": [{"metric": "score", "weight_by_size": False}],
        "metadata": {"version": 2.0},
    }


def task_files() -> dict[str, dict]:
    """Every file of the task folder, by file name, as the dict its YAML holds."""
    metrics = ["score", *map(str, METRIC_LENGTHS)]
    files = {
        TEMPLATE: {
            "dataset_path": "",
            "dataset_name": "",
            "output_type": "generate_until",
            "test_split": "test",
            "custom_dataset": _Function("utils.load_dataset"),
            "doc_to_text": "input",
            "gen_prefix": "gen_prefix",
            "doc_to_target": "{{outputs}}",
            "target_delimiter": " ",
            "process_results": _Function("utils.process_results"),
            "metric_list": [
                {"metric": metric, "aggregation": _Function("utils.aggregate"), "higher_is_better": True}
                for metric in metrics
            ],
            "repeats": 1,
            "metadata": {"version": 2.0},
        }
    }
    for task in TASK_NAMES:
        files[f"{task_name(task)}.yaml"] = {
            "include": TEMPLATE,
            "task": task_name(task),
            "dataset_kwargs": {"ruler_task": task},
            "generation_kwargs": _greedy(task),
        }
    files[f"{HEATMAP}.yaml"] = {
        "include": TEMPLATE,
        "task": HEATMAP,
        "custom_dataset": _Function("utils.load_niah_grid"),
        "generation_kwargs": _greedy(HEATMAP_TASK),
    }
    files["entropylong_ruler.yaml"] = _group("entropylong_ruler", list(TASK_NAMES))
    synthetic = [task for task in TASK_NAMES if not task.startswith("qa_")]
    files["entropylong_ruler_synthetic.yaml"] = _group("entropylong_ruler_synthetic", synthetic)
    return files


def render(config: dict) -> str:
    """The text of one task file."""
    return HEADER + yaml.dump(config, Dumper=_TaskFileDumper, sort_keys=False, allow_unicode=True, width=110)


def write_task_files(folder: str | Path = TASKS_DIR) -> list[Path]:
    """Write every file of `task_files()` into `folder`; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, config in task_files().items():
        path = folder / name
        path.write_text(render(config), encoding="utf-8")
        paths.append(path)
    return paths


if __name__ == "__main__":
    for written in write_task_files():
        print(written)
