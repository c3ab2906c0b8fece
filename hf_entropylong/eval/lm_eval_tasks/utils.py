"""lm-eval glue of the offline RULER tasks: dataset builders, the per-sample score, per-length metrics.

    lm_eval --model hf --model_args pretrained=PATH,dtype=bfloat16 \
        --include_path hf_entropylong/eval/lm_eval_tasks --tasks entropylong_ruler_synthetic \
        --metadata '{"max_seq_lengths": [4096, 8192], "num_samples": 50}'

Metadata keys: `max_seq_lengths` (default [4096]), `num_samples` (default 500), `seed` (42), `haystack`
(the essay haystack: RULER's PaulGrahamEssays.json or a JSON-lines file with `text`; default the embedded
Wikipedia summaries), `chat_template` (false; pass true together with `--apply_chat_template`, so lengths
count the template; plain lm_eval keeps the template's default system prompt, which `hf-entropylong eval
ruler --chat_template` removes), `cwe_words` (RULER's english_words.json, cwe's words beyond
wonderwords'), `squad_file` / `hotpotqa_file`
(for entropylong_qa_1 / entropylong_qa_2), `tokenizer` (default: the model's `pretrained`),
`model_max_length` (a window larger than the config declares), and for `entropylong_niah` the needle
`depths` in percent. The task files themselves are written by `hf_entropylong.eval.task_files`.
"""

from __future__ import annotations

import datasets

from hf_entropylong.eval.haystack import load_hotpotqa, load_squad
from hf_entropylong.eval.ruler_constants import (
    DEFAULT_LENGTHS,
    DEFAULT_SAMPLES,
    DEFAULT_SEED,
    HEATMAP_DEPTHS,
    HEATMAP_TASK,
    QA_DATASETS,
)
from hf_entropylong.eval.ruler_tasks import Resources, generate_samples
from hf_entropylong.eval.runner import check_window
from hf_entropylong.eval.scoring import score_sample
from hf_entropylong.eval.task_files import METRIC_LENGTHS
from hf_entropylong.models import EMBEDDED_CORPUS, load_tokenizer


def _setup(metadata: dict, qa_dataset: str | None = None):
    name = metadata.get("tokenizer") or metadata.get("pretrained")
    if not isinstance(name, str) or not name:
        raise ValueError(
            "The entropylong tasks size prompts in model tokens: pass pretrained= or tokenizer=."
        )
    lengths = [int(length) for length in metadata.get("max_seq_lengths", DEFAULT_LENGTHS)]
    if isinstance(metadata.get("pretrained"), str):
        check_window(metadata["pretrained"], lengths, metadata.get("model_max_length"))
    qa = None
    if qa_dataset is not None:
        key = f"{qa_dataset}_file"
        if not metadata.get(key):
            raise ValueError(
                f'The {qa_dataset} QA task reads a local question file: pass --metadata \'{{"{key}": "PATH"}}\', '
                "or run entropylong_ruler_synthetic (the 11 tasks without QA)."
            )
        qa = (load_squad if qa_dataset == "squad" else load_hotpotqa)(metadata[key])
    settings = {
        "seed": int(metadata.get("seed", DEFAULT_SEED)),
        "resources": Resources(
            haystack=metadata.get("haystack") or EMBEDDED_CORPUS, qa=qa, cwe_words=metadata.get("cwe_words")
        ),
        "chat_template": bool(metadata.get("chat_template", False)),
    }
    return load_tokenizer(name), lengths, int(metadata.get("num_samples", DEFAULT_SAMPLES)), settings


def _as_dataset(rows: list[dict]) -> dict[str, datasets.Dataset]:
    return {"test": datasets.Dataset.from_list(rows, split=datasets.Split.TEST)}


def load_dataset(ruler_task: str, **metadata) -> dict[str, datasets.Dataset]:
    """Samples of RULER task `ruler_task` at every length of `max_seq_lengths`."""
    tokenizer, lengths, num_samples, settings = _setup(metadata, QA_DATASETS.get(ruler_task))
    rows = [
        s
        for length in lengths
        for s in generate_samples(ruler_task, tokenizer, length, num_samples, **settings)
    ]
    return _as_dataset(rows)


def load_niah_grid(**metadata) -> dict[str, datasets.Dataset]:
    """Single-needle essay samples (`HEATMAP_TASK`) at every (length, depth) of the grid."""
    tokenizer, lengths, num_samples, settings = _setup(metadata)
    depths = [int(depth) for depth in metadata.get("depths", HEATMAP_DEPTHS)]
    rows = [
        sample
        for length in lengths
        for depth in depths
        for sample in generate_samples(HEATMAP_TASK, tokenizer, length, num_samples, depth=depth, **settings)
    ]
    return _as_dataset(rows)


def process_results(doc: dict, results: list[str]) -> dict[str, float]:
    """RULER's score of one sample, under `score` and under its length; -1 marks the other lengths.

    This is the only place a prediction is scored: `runner.run_tasks` reads `score` back from the logged
    samples.
    """
    score = score_sample(results[0], doc["outputs"], doc["metric"])
    metrics = {str(length): (score if length == doc["max_length"] else -1.0) for length in METRIC_LENGTHS}
    metrics["score"] = score
    return metrics


def aggregate(values: list[float]) -> float:
    """Mean × 100 of the samples that belong to this metric (-1 = another length)."""
    kept = [value for value in values if value != -1]
    return 100 * sum(kept) / len(kept) if kept else -1.0
