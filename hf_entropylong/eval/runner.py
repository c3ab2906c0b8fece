"""Running the offline RULER tasks through lm-evaluation-harness.

The RULER and NIAH commands hand lm-eval the task folder `lm_eval_tasks/` (the same one a user passes to
`lm_eval --include_path`), its HuggingFace backend (`HFLM`) wrapped around the already-loaded model, and
the task settings as lm-eval `metadata`. lm-eval builds the samples, renders the prompts (`gen_prefix`,
and the chat template when asked), batches, decodes greedily and scores each sample once
(`lm_eval_tasks/utils.process_results`). This module reads the per-sample scores back from lm-eval's
logged samples, so a table can hold any length (or needle depth), not only the per-length metrics the
task files name.

Before any data is generated or any weight is loaded, every requested length is checked against the
model's window (`models.context_window`): a length over it is a clear error, not an out-of-memory crash
or silent truncation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..models import EMBEDDED_LM, context_window, default_device, load_causal_lm, load_tokenizer
from .ruler_constants import DEFAULT_SEED
from .task_files import TASKS_DIR


@dataclass
class EvalModelArguments:
    """The evaluated model and how it runs: the options every eval command shares."""

    model: str = field(default=EMBEDDED_LM, metadata={"help": "Hub id, local path or embedded name."})
    dtype: str = field(
        default_factory=lambda: "bfloat16" if default_device() == "cuda" else "float32",
        metadata={
            "help": "Model dtype; default bfloat16 on a GPU, float32 on the CPU (bfloat16 is 2x slower there)."
        },
    )
    batch_size: int = field(default=1, metadata={"help": "Prompts decoded together (left-padded)."})
    attn_implementation: str | None = field(default=None, metadata={"help": "e.g. sdpa, flash_attention_2."})
    model_max_length: int | None = field(
        default=None, metadata={"help": "The model's window, when its config understates it."}
    )

    def check_positive(self, *names: str) -> None:
        """Raise a ValueError naming the first option among `names` (and the shared ones) set below 1."""
        for name in ("batch_size", "model_max_length", *names):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be positive, got {value}.")


def check_window(model: str, lengths: list[int], max_length: int | None = None) -> int:
    """The window of `model` in tokens, after checking that every one of `lengths` fits in it.

    Args:
        model: Hub id, local path or embedded name (only its config is read).
        lengths: the context lengths to evaluate.
        max_length: a window that overrides the config's (`--model_max_length`).

    Raises:
        ValueError: no or non-positive lengths, no window known, or lengths over the window (named).
    """
    if not lengths:
        raise ValueError("No lengths to evaluate: give at least one with --lengths.")
    if any(length <= 0 for length in lengths):
        raise ValueError(f"Lengths must be positive, got {lengths}.")
    try:
        window = context_window(model, max_length)
    except ValueError as error:
        raise ValueError(f"{model}: {error} (--model_max_length)") from error
    over = [length for length in lengths if length > window]
    if over:
        raise ValueError(
            f"Length(s) {over} exceed the window of {model} ({window} tokens). Evaluate lengths up to "
            f"{window} (e.g. --lengths {' '.join(str(x) for x in lengths if x <= window) or window}), or set "
            "--model_max_length if the model was extended beyond what its config declares."
        )
    return window


def load_lm(model: str, dtype: str, batch_size: int, max_length: int, attn_implementation: str | None):
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
        metadata: passed to the tasks' dataset builders (`max_seq_lengths`, `num_samples`, `seed`, ...);
            its `chat_template` also tells lm-eval to apply the chat template.
        output_dir: when given, lm-eval's own aggregated results go to `<output_dir>/lm_eval_results.json`.
        gen_kwargs: generation settings that override every task's (e.g. `{"max_gen_toks": 16}`).

    Returns:
        rows with `task` (RULER name), `index`, `max_length`, `length`, `depth`, `outputs`, `prediction` and
        `score` (lm-eval's, in [0, 1]).
    """
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata=metadata)
    results = simple_evaluate(
        model=lm,
        tasks=tasks,
        task_manager=manager,
        apply_chat_template=bool(metadata.get("chat_template", False)),
        log_samples=True,
        bootstrap_iters=0,
        gen_kwargs=gen_kwargs,
        random_seed=metadata.get("seed", DEFAULT_SEED),
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
            rows.append(
                {
                    "task": doc["task"],
                    "index": doc["index"],
                    "max_length": doc["max_length"],
                    "length": doc["length"],
                    "depth": doc["depth"],
                    "outputs": doc["outputs"],
                    "prediction": prediction[0] if isinstance(prediction, list) else prediction,
                    "score": sample["score"],
                }
            )
    return rows
