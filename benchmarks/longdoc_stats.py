"""What a build of long roots gives and costs, by root length: the paper's statistics and each stage's LM tokens.

Reads the stage caches of a build (`<output_dir>/.cache/{entropy,retrieval,verify,units}-*.arrow`; finished shards
only, so it also reads a build still running) and prints, per bin of `--bin_tokens` root tokens:

- high-entropy positions per root: all of H_t > μ + α·σ, counted from the root's entropy histogram (0.25-nat bins;
  the bin that holds the threshold counted in proportion), and those tested (`max_positions_per_root`);
- candidates tried and verified contexts per root, kept (position, candidate) pairs and their mean ΔI, and the ΔI
  of every pair tried (mean and max);
- tokens per unit ([verified contexts; root]) and the dependency distances inside the units (median, 90th pct);
- LM tokens per stage: entropy, one forward over the root; verification, the exact minimum the builder forwards
  within 1.1× (`stages/verify.py`): Σ over distinct (root, candidate) of |candidate| + last tested position + 1;
  embedded tokens, the queries' (the corpus is embedded once, counted apart);
- seconds per stage and shard, from the caches' modification times (one process runs the shards in order: a
  stage's time is its file's time minus the previous file's). Only meaningful on a machine nothing else loads.

    python benchmarks/longdoc_stats.py --output_dir outputs/longdocs --corpus outputs/linux-doc/passages.jsonl embedded:wiki-summaries

Prints Markdown tables, and with `--per_root` one line per root.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
from transformers import HfArgumentParser

from hf_entropylong.models import EMBEDDED_EMBEDDER, EMBEDDED_LM, load_tokenizer
from hf_entropylong.sources import load_text_source
from hf_entropylong.stages.entropy import ENTROPY_HISTOGRAM_EDGES

STAGES = ("entropy", "retrieval", "verify", "units")


@dataclass
class StatsArguments:
    output_dir: str = field(metadata={"help": "The build's output_dir (its .cache is read)."})
    corpus: list[str] = field(
        default_factory=lambda: ["outputs/linux-doc/passages.jsonl", "embedded:wiki-summaries"],
        metadata={"help": "The build's corpus sources, in its order (candidate lengths)."},
    )
    tokenizer: str = field(default=EMBEDDED_LM, metadata={"help": "The build's LM tokenizer."})
    embedder: str = field(
        default=EMBEDDED_EMBEDDER, metadata={"help": "The build's embedder (query tokens)."}
    )
    alpha: float = field(default=2.0, metadata={"help": "The build's alpha."})
    bin_tokens: int = field(default=1000, metadata={"help": "Width of the root-length bins."})
    per_root: bool = field(default=False, metadata={"help": "Also print one line per root."})


def positions_above(histogram: list[int], mean: float, std: float, alpha: float) -> float:
    """Tokens with entropy above mean + alpha·std, from the root's histogram (the threshold's bin pro rata)."""
    threshold = mean + alpha * std
    counts = np.asarray(histogram, dtype=np.float64)
    lower, upper = ENTROPY_HISTOGRAM_EDGES[:-1], ENTROPY_HISTOGRAM_EDGES[1:]
    share = np.clip((upper - threshold) / (upper - lower), 0.0, 1.0)
    return float((counts * share).sum())


def shard_tables(cache: Path) -> dict[int, dict[str, Path]]:
    """{shard: {stage: its cache file}} for the shards whose units stage is finished."""
    found: dict[int, dict[str, Path]] = defaultdict(dict)
    for path in cache.glob("*.arrow"):
        match = re.fullmatch(r"(\w+)-[0-9a-f]+-(\d+)-of-\d+\.arrow", path.name)
        if match and match[1] in STAGES:
            found[int(match[2])][match[1]] = path
    return {shard: files for shard, files in sorted(found.items()) if set(files) == set(STAGES)}


def stage_seconds(shards: dict[int, dict[str, Path]], cache: Path) -> dict[int, dict[str, float]]:
    """Each stage's seconds per shard: its file's modification time minus the one before it (before the first
    shard's entropy: the index file's, so that one includes loading the LM)."""
    order = [(shard, stage) for shard in shards for stage in STAGES]
    times = [shards[shard][stage].stat().st_mtime for shard, stage in order]
    index = [path.stat().st_mtime for path in cache.glob("index-*.faiss")]
    seconds: dict[int, dict[str, float]] = defaultdict(dict)
    for (shard, stage), before, after in zip(order, [*index[:1], *times[:-1]], times, strict=False):
        seconds[shard][stage] = after - before
    return seconds


def root_stats(row: dict, candidate_tokens, query_tokens, alpha: float) -> dict:
    """The per-root counts of one finished row (its units-stage table)."""
    tried = defaultdict(int)  # distinct candidate -> last tested position
    for candidate in row["candidates"]:
        tried[candidate["corpus_index"]] = max(tried[candidate["corpus_index"]], candidate["token_index"])
    kept = [c["delta_i"] for c in row["candidates"] if c["kept"]]
    return {
        "id": row["id"],
        "tokens": row["num_tokens"],
        "above": positions_above(row["entropy_histogram"], row["entropy_mean"], row["entropy_std"], alpha)
        if row["entropy_histogram"]
        else 0.0,
        "tested": len(row["positions"]),
        "pairs": len(row["candidates"]),
        "distinct": len(tried),
        "contexts": sum(c["verified"] for c in row["contexts"]),
        "kept": kept,
        "delta_i": [c["delta_i"] for c in row["candidates"]],
        "unit": row["num_unit_tokens"] if row["unit_context_ids"] else 0,
        "distances": row["dependency_distances"],
        "lm_entropy": row["num_tokens"],
        "lm_verify": sum(candidate_tokens(i) + p + 1 for i, p in tried.items()),
        "embedded": sum(query_tokens(p["query"]) for p in row["positions"]),
    }


def print_tables(roots: list[dict], seconds: dict[int, dict[str, float]], shard_of: dict, args) -> None:
    bins = defaultdict(list)
    for root in roots:
        bins[root["tokens"] // args.bin_tokens * args.bin_tokens].append(root)
    print(
        "| root tokens | roots | high-entropy positions (all / tested) | candidates tried (distinct) | verified "
        "contexts | kept pairs, mean ΔI | ΔI of every pair tried: mean / max | tokens per unit (roots with a unit) | dependency distance median / p90 "
        "| LM tokens: entropy / verify | embedded query tokens | seconds: entropy / retrieval / verify |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for start, group in sorted(bins.items()):
        kept = [d for r in group for d in r["kept"]]
        tried = [d for r in group for d in r["delta_i"]] or [float("nan")]
        units = [r["unit"] for r in group if r["unit"]]
        distances = [d for r in group for d in r["distances"]]
        shards = {shard_of[r["id"]] for r in group}
        spent = {
            s: sum(seconds[sh].get(s, np.nan) for sh in shards) for s in ("entropy", "retrieval", "verify")
        }
        n = len(group)

        def mean(key, group=group, n=n):
            return sum(r[key] for r in group) / n

        print(
            f"| {start:,}-{start + args.bin_tokens - 1:,} (mean {mean('tokens'):,.0f}) | {n} | "
            f"{mean('above'):.0f} / {mean('tested'):.1f} | {mean('pairs'):.1f} ({mean('distinct'):.1f}) | "
            f"{mean('contexts'):.2f} | {len(kept)}, {np.mean(kept) if kept else float('nan'):.2f} | "
            f"{np.mean(tried):.3f} / {np.max(tried):.3f} | "
            f"{np.mean(units) if units else 0:,.0f} ({len(units)}) | "
            + (f"{np.median(distances):,.0f} / {np.percentile(distances, 90):,.0f}" if distances else "–")
            + f" | {mean('lm_entropy'):,.0f} / {mean('lm_verify'):,.0f} | {mean('embedded'):,.0f} | "
            f"{spent['entropy'] / n:.0f} / {spent['retrieval'] / n:.0f} / {spent['verify'] / n:.0f} |"
        )
    kept = [d for r in roots for d in r["kept"]]
    distances = sorted(d for r in roots for d in r["distances"])
    if distances:
        quartiles = np.percentile(distances, [10, 25, 50, 75, 90])
        print(
            f"\nAll {len(roots)} roots: {len(kept)} kept pairs, mean ΔI {np.mean(kept):.3f}; dependency distances "
            f"p10/p25/p50/p75/p90 = {' / '.join(f'{q:,.0f}' for q in quartiles)}, max {max(distances):,}."
        )
    if args.per_root:
        print(
            "\n| root | tokens | positions above / tested | pairs | contexts | unit tokens | LM verify tokens |"
        )
        print("|---|---|---|---|---|---|---|")
        for r in roots:
            print(
                f"| {r['id']} | {r['tokens']:,} | {r['above']:.0f} / {r['tested']} | {r['pairs']} | "
                f"{r['contexts']} | {r['unit']:,} | {r['lm_verify']:,} |"
            )


def main(args: StatsArguments) -> None:
    cache = Path(args.output_dir) / ".cache"
    shards = shard_tables(cache)
    if not shards:
        raise SystemExit(f"{args.output_dir}/.cache has no shard through the units stage yet.")
    corpus = datasets.concatenate_datasets([load_text_source(s, role="corpus")[0] for s in args.corpus])
    tokenizer, embed_tokenizer = load_tokenizer(args.tokenizer), load_tokenizer(args.embedder)

    def candidate_tokens(row: int) -> int:
        return len(tokenizer(corpus[row]["text"])["input_ids"])

    def query_tokens(query: str) -> int:
        return len(embed_tokenizer(query)["input_ids"])

    roots, shard_of = [], {}
    for shard, files in shards.items():
        for row in datasets.Dataset.from_file(str(files["units"])):
            roots.append(root_stats(row, candidate_tokens, query_tokens, args.alpha))
            shard_of[row["id"]] = shard
    print(f"{len(roots)} roots in {len(shards)} finished shards of {args.output_dir}\n")
    print_tables(roots, stage_seconds(shards, cache), shard_of, args)


if __name__ == "__main__":
    (arguments,) = HfArgumentParser((StatsArguments,)).parse_args_into_dataclasses()
    main(arguments)
