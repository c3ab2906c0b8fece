"""lm-eval glue for the offline RULER tasks: dataset builders and per-length metrics.

    lm_eval --model hf --model_args pretrained=PATH,dtype=bfloat16 \
        --include_path hf_entropylong/eval/lm_eval_tasks --tasks entropylong_ruler_synthetic \
        --metadata '{"max_seq_lengths": [4096, 8192], "num_samples": 50}'

Metadata keys: `max_seq_lengths` (default [4096]), `num_samples` (default 500), `seed` (42), `corpus`
(haystack JSON-lines file, default the embedded Wikipedia summaries), `chat_template` (false),
`squad_file` / `hotpotqa_file` (for entropylong_qa_1 / entropylong_qa_2), `tokenizer` (default: the
model's `pretrained`), and for `entropylong_niah` the needle `depths` in percent.
"""

from __future__ import annotations

import datasets

from hf_entropylong.eval.haystack import load_hotpotqa, load_squad
from hf_entropylong.eval.ruler_tasks import QA_DATASETS, Resources, generate_samples
from hf_entropylong.eval.runner import check_lengths, model_window
from hf_entropylong.eval.scoring import score_sample
from hf_entropylong.models import EMBEDDED_CORPUS, load_tokenizer

METRIC_LENGTHS = (1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072)
DEFAULT_DEPTHS = (0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100)


def _setup(metadata: dict, qa_dataset: str | None = None):
    name = metadata.get("tokenizer") or metadata.get("pretrained")
    if not isinstance(name, str) or not name:
        raise ValueError("The entropylong tasks size prompts in model tokens: pass pretrained= or tokenizer=.")
    lengths = [int(length) for length in metadata.get("max_seq_lengths", [4096])]
    if isinstance(metadata.get("pretrained"), str):
        check_lengths(lengths, metadata["pretrained"], metadata.get("model_max_length") or model_window(metadata["pretrained"]))
    qa = None
    if qa_dataset is not None:
        key = f"{qa_dataset}_file"
        if not metadata.get(key):
            raise ValueError(
                f"The {qa_dataset} QA task reads a local question file: pass --metadata '{{\"{key}\": \"PATH\"}}', "
                "or run entropylong_ruler_synthetic (the 11 tasks without QA)."
            )
        qa = (load_squad if qa_dataset == "squad" else load_hotpotqa)(metadata[key])
    resources = Resources(corpus=metadata.get("corpus") or EMBEDDED_CORPUS, qa=qa)
    settings = {
        "seed": int(metadata.get("seed", 42)),
        "resources": resources,
        "chat_template": bool(metadata.get("chat_template", False)),
    }
    return load_tokenizer(name), lengths, int(metadata.get("num_samples", 500)), settings


def _as_dataset(rows: list[dict]) -> dict[str, datasets.Dataset]:
    return {"test": datasets.Dataset.from_list(rows, split=datasets.Split.TEST)}


def load_dataset(ruler_task: str, **metadata) -> dict[str, datasets.Dataset]:
    """Samples of RULER task `ruler_task` at every length of `max_seq_lengths`."""
    tokenizer, lengths, num_samples, settings = _setup(metadata, QA_DATASETS.get(ruler_task))
    rows = [s for length in lengths for s in generate_samples(ruler_task, tokenizer, length, num_samples, **settings)]
    return _as_dataset(rows)


def load_niah_grid(**metadata) -> dict[str, datasets.Dataset]:
    """Single-needle essay samples (niah_single_2) at every (length, depth) of the grid."""
    tokenizer, lengths, num_samples, settings = _setup(metadata)
    depths = [int(depth) for depth in metadata.get("depths", DEFAULT_DEPTHS)]
    rows = [
        sample
        for length in lengths
        for depth in depths
        for sample in generate_samples("niah_single_2", tokenizer, length, num_samples, depth=depth, **settings)
    ]
    return _as_dataset(rows)


def process_results(doc: dict, results: list[str]) -> dict[str, float]:
    """RULER's score under `score` and under the sample's length; -1 marks the other lengths."""
    score = score_sample(results[0], doc["outputs"], doc["metric"])
    metrics = {str(length): (score if length == doc["max_length"] else -1.0) for length in METRIC_LENGTHS}
    metrics["score"] = score
    return metrics


def aggregate(values: list[float]) -> float:
    """Mean × 100 of the samples that belong to this metric (-1 = another length)."""
    kept = [value for value in values if value != -1]
    return 100 * sum(kept) / len(kept) if kept else -1.0
