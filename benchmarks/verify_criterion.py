"""The two verification criteria on one build: what `entropy_and_target` rejects of what `entropy` keeps.

`entropy` (the paper) keeps a (position, candidate) pair when ΔI ≥ ε; `entropy_and_target` also asks that the
candidate raise the probability of the root's actual token there. Every candidate of a build records ΔI, and its
position the log-probability of the actual token given the root alone (`target_logprob`) and the candidate's the
one given candidate + root prefix (`target_logprob_with_context`), so both rules are decided here from one build's
`dependencies` table, whichever criterion it was built with (ε from its `build_config.yaml`).

Prints a Markdown table of the pairs, contexts and roots each rule keeps, then the `--examples` rejected pairs of
highest ΔI (one per root) with the token the model predicts instead: for those it loads the build's LM and
corpus and runs candidate + root prefix once each (`--predict false` skips it).

    python benchmarks/verify_criterion.py --build outputs/demo
"""

from __future__ import annotations

from dataclasses import dataclass, field

import datasets
import numpy as np
import torch
import yaml
from transformers import HfArgumentParser

from hf_entropylong.models import encode_document, load_causal_lm, load_tokenizer
from hf_entropylong.sources import load_text_source


@dataclass
class Arguments:
    build: str = field(metadata={"help": "A published build folder (its `dependencies` config is read)."})
    examples: int = field(
        default=3, metadata={"help": "Rejected pairs to show, one per root, highest ΔI first."}
    )
    predict: bool = field(default=True, metadata={"help": "Show what the model predicts with the candidate."})


def pairs_of(table: datasets.Dataset, epsilon: float) -> list[dict]:
    """Every (position, candidate) pair tried, with both decisions."""
    pairs = []
    for row in table:
        alone = {p["token_index"]: p for p in row["positions"]}
        for candidate in row["candidates"]:
            position = alone[candidate["token_index"]]
            gain = candidate["target_logprob_with_context"] - position["target_logprob"]
            entropy = candidate["delta_i"] >= epsilon
            pairs.append(
                {
                    "root_id": row["root_id"],
                    "root_text": row["root_text"],
                    "token": position["token"],
                    "token_index": candidate["token_index"],
                    "corpus_index": candidate["corpus_index"],
                    "corpus_id": candidate["corpus_id"],
                    "delta_i": candidate["delta_i"],
                    "p_alone": float(np.exp(position["target_logprob"])),
                    "p_with_context": float(np.exp(candidate["target_logprob_with_context"])),
                    "entropy": entropy,
                    "entropy_and_target": entropy and gain > 0,
                }
            )
    return pairs


def summary(pairs: list[dict], num_roots: int) -> str:
    lines = [
        "| | `entropy` (the paper) | `entropy_and_target` | rejected by the stricter rule |",
        "|---|---:|---:|---:|",
    ]

    def row(name: str, loose: int, strict: int) -> None:
        share = f" ({(loose - strict) / loose:.0%})" if loose else ""
        lines.append(f"| {name} | {loose} | {strict} | {loose - strict}{share} |")

    for name, key in (
        ("dependencies (position, candidate pairs)", None),
        ("contexts (root, candidate)", ("root_id", "corpus_index")),
        (f"roots with a verified context (of {num_roots})", ("root_id",)),
    ):
        kept = {}
        for rule in ("entropy", "entropy_and_target"):
            chosen = [p for p in pairs if p[rule]]
            kept[rule] = len(chosen) if key is None else len({tuple(p[k] for k in key) for p in chosen})
        row(name, kept["entropy"], kept["entropy_and_target"])
    means = [
        np.mean([p["delta_i"] for p in pairs if p[rule]] or [np.nan])
        for rule in ("entropy", "entropy_and_target")
    ]
    lines.append(f"| mean ΔI of the kept pairs | {means[0]:.3f} | {means[1]:.3f} | |")
    return "\n".join(lines)


def rejected_examples(pairs: list[dict], count: int) -> list[dict]:
    """The rejected pairs of highest ΔI, one per root."""
    rejected = sorted(
        (p for p in pairs if p["entropy"] and not p["entropy_and_target"]), key=lambda p: -p["delta_i"]
    )
    chosen, roots = [], set()
    for pair in rejected:
        if pair["root_id"] not in roots:
            chosen.append(pair)
            roots.add(pair["root_id"])
        if len(chosen) == count:
            break
    return chosen


@torch.inference_mode()
def add_predictions(examples: list[dict], config: dict) -> None:
    """The model's most likely token at each example's position, given candidate + root prefix."""
    tokenizer, model = load_tokenizer(config["lm"]), load_causal_lm(config["lm"], dtype=config["lm_dtype"])
    corpus = datasets.concatenate_datasets(
        [
            load_text_source(
                source, config["corpus_split"], config["corpus_text_column"], config["corpus_id_column"]
            )[0]
            for source in config["corpus"]
        ]
    )
    for example in examples:
        document = corpus[example["corpus_index"]]
        assert document["id"] == example["corpus_id"], "the corpus is not the build's"
        root_ids = encode_document(tokenizer, example["root_text"])
        ids = encode_document(tokenizer, document["text"]) + root_ids[: example["token_index"]]
        log_probs = model(torch.tensor([ids], device=model.device)).logits[0, -1].float().log_softmax(-1)
        top = int(log_probs.argmax())
        example["predicted"] = f"{tokenizer.decode([top])!r} ({float(log_probs[top].exp()):.2f})"
        example["p_check"] = float(log_probs[root_ids[example["token_index"]]].exp())


def examples_table(examples: list[dict]) -> str:
    predicted = all("predicted" in e for e in examples)
    lines = [
        "| root | token | candidate | ΔI | p(token): root alone → with candidate |"
        + (" model's top token with candidate |" if predicted else ""),
        "|---|---|---|---:|---|" + ("---|" if predicted else ""),
    ]
    for e in examples:
        lines.append(
            f"| {e['root_id']} | {e['token']!r} | {e['corpus_id']} | {e['delta_i']:.2f} | "
            f"{e['p_alone']:.3f} → {e['p_with_context']:.3f} |"
            + (f" {e['predicted']} |" if predicted else "")
        )
    return "\n".join(lines)


def main(args: Arguments) -> None:
    config = yaml.safe_load(open(f"{args.build}/build_config.yaml"))
    table = datasets.load_dataset(args.build, "dependencies", split="train")
    pairs = pairs_of(table, config["epsilon"])
    print(f"{args.build}: {len(table)} roots, {len(pairs)} pairs tried, ε = {config['epsilon']}\n")
    print(summary(pairs, len(table)))
    examples = rejected_examples(pairs, args.examples)
    if examples and args.predict:
        add_predictions(examples, config)
        for e in examples:  # the recorded probability is reproduced by a plain forward
            assert abs(e["p_check"] - e["p_with_context"]) <= 1e-3 + 1e-2 * e["p_with_context"], e
    print()
    print(examples_table(examples))


if __name__ == "__main__":
    main(HfArgumentParser(Arguments).parse_args_into_dataclasses()[0])
