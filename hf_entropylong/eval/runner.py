"""Running generation tasks through lm-evaluation-harness, offline.

The RULER and NIAH commands hand lm-eval the task folder `lm_eval_tasks/` (the same one a user passes to
`lm_eval --include_path`), its HuggingFace backend (`HFLM`) wrapped around the already-loaded model, and
the task settings as lm-eval `metadata`. lm-eval builds the requests, batches and decodes greedily; this
module then reads its logged samples back and scores each one with `scoring.score_sample`, so a table
can hold any length, not only the lengths named in the task YAML.

Before any data is generated or any weight is loaded, every requested length is checked against the
model's window (`max_position_embeddings`, times the RoPE scaling factor when the config declares one):
a length over it is a clear error, not an out-of-memory crash or silent truncation.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..models import default_device, load_causal_lm, load_tokenizer, resolve_model
from .scoring import score_sample

TASKS_DIR = Path(__file__).parent / "lm_eval_tasks"
logger = logging.getLogger(__name__)


def model_window(model: str) -> int | None:
    """The context window of `model` in tokens, from its config; None when the config declares none."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(resolve_model(model))
    config = getattr(config, "text_config", None) or config
    window = getattr(config, "max_position_embeddings", None)
    if window is None:
        return None
    scaling = getattr(config, "rope_scaling", None) or {}
    factor = scaling.get("factor") if isinstance(scaling, dict) else None
    if factor and scaling.get("original_max_position_embeddings") is None:
        window = int(window * factor)
    return int(window)


def check_lengths(lengths: list[int], model: str, window: int | None) -> None:
    """Raise a ValueError naming the offending lengths when any is over the model's window."""
    if not lengths:
        raise ValueError("No lengths to evaluate: give at least one with --lengths.")
    if any(length <= 0 for length in lengths):
        raise ValueError(f"Lengths must be positive, got {lengths}.")
    if window is None:
        return
    over = [length for length in lengths if length > window]
    if over:
        raise ValueError(
            f"Length(s) {over} exceed the window of {model} ({window} tokens). Evaluate lengths up to "
            f"{window} (e.g. --lengths {' '.join(str(x) for x in lengths if x <= window) or window}), or set "
            "--model_max_length if the model was extended beyond what its config declares."
        )


def load_lm(model: str, dtype: str, batch_size: int, max_length: int | None, attn_implementation: str | None):
    """lm-eval's `HFLM` around the model loaded with `load_causal_lm` (so embedded names and paths work)."""
    from lm_eval.models.huggingface import HFLM

    tokenizer = load_tokenizer(model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    lm = load_causal_lm(model, dtype=dtype, device=default_device(), attn_implementation=attn_implementation)
    return HFLM(pretrained=lm, tokenizer=tokenizer, batch_size=batch_size, max_length=max_length), tokenizer


def run_tasks(
    lm, tasks: list[str], metadata: dict, output_dir: str | Path | None = None, gen_kwargs: dict | None = None
) -> list[dict]:
    """Evaluate lm-eval `tasks` from `TASKS_DIR` and return one scored row per sample.

    Args:
        lm: an lm-eval `LM` (normally from `load_lm`).
        tasks: lm-eval task names, e.g. `entropylong_niah_single_1`.
        metadata: passed to the tasks' dataset builders (`max_seq_lengths`, `num_samples`, `seed`, ...).
        output_dir: when given, lm-eval's own aggregated results go to `<output_dir>/lm_eval_results.json`.
        gen_kwargs: generation settings that override every task's (e.g. `{"max_gen_toks": 16}`).

    Returns:
        rows with `task` (RULER name), `index`, `max_length`, `length`, `depth`, `outputs`, `prediction`, `score`.
    """
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata=metadata)
    results = simple_evaluate(
        model=lm,
        tasks=tasks,
        task_manager=manager,
        log_samples=True,
        bootstrap_iters=0,
        gen_kwargs=gen_kwargs,
        random_seed=metadata.get("seed", 42),
    )
    if output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        kept = {key: results[key] for key in ("results", "groups", "n-samples", "versions") if key in results}
        (Path(output_dir) / "lm_eval_results.json").write_text(json.dumps(kept, indent=2, default=str) + "\n")
    rows = []
    for samples in results["samples"].values():
        for sample in samples:
            doc = sample["doc"]
            prediction = sample["filtered_resps"][0]
            prediction = prediction[0] if isinstance(prediction, list) else prediction
            rows.append(
                {
                    "task": doc["task"],
                    "index": doc["index"],
                    "max_length": doc["max_length"],
                    "length": doc["length"],
                    "depth": doc.get("depth"),
                    "outputs": doc["outputs"],
                    "prediction": prediction,
                    "score": score_sample(prediction, doc["outputs"], doc["metric"]),
                }
            )
    return rows
