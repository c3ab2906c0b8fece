"""GPU-hours of a paper-scale build, per stage: counts per root × roots ÷ measured or assumed rates.

Per root of L tokens (the counts' ratios come from a long-root build, `--from_build`, or the flags):

- entropy: L LM tokens (one forward per root within the LM window);
- positions: P = `positions_per_token` × L high-entropy positions (or `--positions` fixed, e.g. the paper's 292);
- retrieval: P queries of `query_tokens` embedded tokens, each scanning `scan_bytes_per_query` of the index;
- verification: P × `top_k` × `distinct_share` distinct (root, candidate) sequences of `candidate_tokens` +
  `last_position_share` × L tokens, the exact minimum (`stages/verify.py`; the builder forwards ≤ 1.1× of it,
  1.01× on 2.9K-token roots in BENCHMARKS.md);
- the corpus index, once: `corpus_documents` × `document_tokens` embedded tokens;
- verification with the screen (`verify_screen` = `screen_window`, `verify_screen_context` = `screen_context`): each
  distinct candidate is screened at every one of its positions through the local root window, its passage nearest
  the query (min(`candidate_tokens`, `screen_context`) + `screen_window`) tokens per position
  (each position its own window: an upper bound), when that is at most half its exact sequence (else it is
  verified exactly at once, as the builder does); `screen_pass_rate` of the screened candidates (measured:
  `benchmarks/verify_screen_bench.py`) are then verified exactly.

Rates per H100 (tokens/s): entropy 29,298 and verification 37,102, measured on an H100 with a Llama-3-8B-shaped model
in bfloat16 (BENCHMARKS.md, "LM stages at the paper's model size"), or those of a `make gpu-check` run
(`--measured`: its builder_lm section, the same measurement on the card it ran on); embedding
`embed_tokens_per_s` and the index scan `scan_tb_per_s` are assumptions (not measured here: no GPU build of FAISS or jina-embeddings-v3 run yet).
Node-hours are GPU-hours / 8 (8×H100 per node: every stage splits by root or corpus shard across ranks).

Layouts (the second table): a torchrun / accelerate gang of `gang_nodes` GPU nodes holds every node from the first
stage to the last, so its GPU nodes also wait while one process builds the index and packs and publishes, and
every rank loads the models once; datatrove (`--executor slurm|ray`) runs the GPU pipelines as tasks of one GPU
each (every root-shard task loads the models: `lm_load_minutes` per task) and indexing and publishing as tasks of
their own, here on a CPU node (the index on one GPU with `index_on_gpu`). Index build and publishing rates are
assumptions.

    python benchmarks/build_cost.py --from_build outputs/longdocs --corpus outputs/linux-doc/passages.jsonl embedded:wiki-summaries
    python benchmarks/build_cost.py --positions 292 --root_tokens 8000   # the paper's positions per root
    python benchmarks/build_cost.py --measured outputs/gpu_check/gpu_check.jsonl   # rates of a `make gpu-check`

Prints Markdown tables.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser

from hf_entropylong.stages.screen import SCREEN_MAX_SHARE


@dataclass
class CostArguments:
    roots: int = field(default=100_000, metadata={"help": "Roots of the build (the paper: 100K)."})
    root_tokens: list[int] = field(
        default_factory=lambda: [1000, 4000, 8000], metadata={"help": "Root lengths L."}
    )
    positions: int | None = field(default=None, metadata={"help": "Positions per root (else the ratio × L)."})
    positions_per_token: float = field(
        default=0.03, metadata={"help": "High-entropy positions per root token."}
    )
    top_k: int = field(default=5, metadata={"help": "Candidates per position (the recipe: 5)."})
    distinct_share: float = field(
        default=0.9, metadata={"help": "Distinct (root, candidate) per pair tried."}
    )
    candidate_tokens: float = field(default=1000, metadata={"help": "Mean candidate length (LM tokens)."})
    last_position_share: float = field(
        default=0.5, metadata={"help": "Last tested position / L, per candidate."}
    )
    query_tokens: float = field(
        default=45, metadata={"help": "Embedded tokens per query (16 words each side)."}
    )
    corpus_documents: int = field(
        default=20_000_000, metadata={"help": "Corpus documents (the recipe: ~20M)."}
    )
    document_tokens: float = field(default=1000, metadata={"help": "Embedded tokens per corpus document."})
    scan_bytes_per_query: float = field(default=1.28e9, metadata={"help": "Index bytes scanned per query."})
    entropy_tokens_per_s: float = field(
        default=29_298, metadata={"help": "Measured, H100, Llama-3-8B shape."}
    )
    verify_tokens_per_s: float = field(default=37_102, metadata={"help": "Measured, H100, Llama-3-8B shape."})
    embed_tokens_per_s: float = field(
        default=350_000, metadata={"help": "Assumed, H100, jina-embeddings-v3."}
    )
    scan_tb_per_s: float = field(default=1.0, metadata={"help": "Assumed IVF scan rate per H100 (TB/s)."})
    screen_window: int = field(
        default=64, metadata={"help": "verify_screen: root tokens before each position."}
    )
    screen_context: int | None = field(
        default=128,
        metadata={
            "help": "verify_screen_context: candidate tokens the screen reads (None: the whole candidate)."
        },
    )
    screen_pass_rate: float = field(
        default=0.2,
        metadata={
            "help": "Share of the screened candidates verified exactly (measured: 46 of 228 on positives-rich long "
            "roots at window 64, passage 128, screen ΔI >= 0.3)."
        },
    )
    gpus_per_node: int = field(default=8, metadata={"help": "GPUs per node."})
    gang_nodes: int = field(default=4, metadata={"help": "GPU nodes of a torchrun / accelerate build."})
    shard_size: int = field(default=1024, metadata={"help": "Roots per root shard (the 8B recipe: 1,024)."})
    lm_load_minutes: float = field(
        default=2.0, metadata={"help": "Assumed: loading the LM and the embedder onto a GPU, per process."}
    )
    index_vectors_per_s: float = field(
        default=50_000, metadata={"help": "Assumed: training, filling and merging the index, vectors/s."}
    )
    published_tokens: float = field(
        default=4e9, metadata={"help": "Tokens packed and published (the paper: 4B)."}
    )
    publish_tokens_per_s: float = field(
        default=1e6,
        metadata={"help": "Assumed: packing, decoding and writing rows on one CPU node, tokens/s."},
    )
    from_build: str | None = field(
        default=None, metadata={"help": "Take the per-root ratios from this build."}
    )
    measured: str | None = field(
        default=None,
        metadata={
            "help": "A `make gpu-check` gpu_check.jsonl: its builder_lm rates replace the two LM rates."
        },
    )
    corpus: list[str] = field(
        default_factory=lambda: ["outputs/linux-doc/passages.jsonl", "embedded:wiki-summaries"],
        metadata={"help": "That build's corpus sources (candidate lengths)."},
    )


def ratios_from_build(args: CostArguments) -> None:
    """Replace the per-root ratios of `args` by those of a finished long-root build (`longdoc_stats`)."""
    import datasets
    from longdoc_stats import STAGES, root_stats, shard_tables

    from hf_entropylong.models import EMBEDDED_EMBEDDER, EMBEDDED_LM, load_tokenizer
    from hf_entropylong.sources import load_text_source

    corpus = datasets.concatenate_datasets([load_text_source(s, role="corpus")[0] for s in args.corpus])
    tokenizer, embed_tokenizer = load_tokenizer(EMBEDDED_LM), load_tokenizer(EMBEDDED_EMBEDDER)
    lengths: dict[int, int] = {}

    def candidate_tokens(row: int) -> int:
        if row not in lengths:
            lengths[row] = len(tokenizer(corpus[row]["text"])["input_ids"])
        return lengths[row]

    roots, last_shares = [], []
    for files in shard_tables(Path(args.from_build) / ".cache").values():
        assert set(files) == set(STAGES)
        for row in datasets.Dataset.from_file(str(files["units"])):
            roots.append(
                root_stats(row, candidate_tokens, lambda q: len(embed_tokenizer(q)["input_ids"]), 2.0)
            )
            last = {}
            for c in row["candidates"]:
                last[c["corpus_index"]] = max(last.get(c["corpus_index"], 0), c["token_index"])
            last_shares += [p / row["num_tokens"] for p in last.values()]
    tokens = sum(r["tokens"] for r in roots)
    pairs, tested = sum(r["pairs"] for r in roots), sum(r["tested"] for r in roots)
    args.positions_per_token = sum(r["above"] for r in roots) / tokens
    args.distinct_share = sum(r["distinct"] for r in roots) / pairs
    args.last_position_share = sum(last_shares) / len(last_shares)
    args.query_tokens = sum(r["embedded"] for r in roots) / tested
    print(
        f"From {args.from_build} ({len(roots)} roots, {tokens:,} tokens): {args.positions_per_token:.4f} "
        f"high-entropy positions per token, {args.distinct_share:.2f} distinct candidates per pair, last tested "
        f"position at {args.last_position_share:.2f} of the root, {args.query_tokens:.0f} tokens per query, "
        f"{sum(r['contexts'] for r in roots) / tested:.3f} verified contexts per tested position.\n"
    )


def read_measured_rates(args: CostArguments) -> str:
    """Set the entropy and verification rates from the last builder_lm record of `args.measured`; its device."""
    records = [json.loads(line) for line in Path(args.measured).read_text().splitlines() if line.strip()]
    builder = [r for r in records if r["section"] == "builder_lm" and r["status"] == "ok"]
    if not builder:
        raise SystemExit(
            f"{args.measured}: no builder_lm section that finished ok; run `make gpu-check` first."
        )
    result = builder[-1]["result"]
    args.entropy_tokens_per_s, args.verify_tokens_per_s = (
        result["entropy_tokens_per_s"],
        result["verify_tokens_per_s"],
    )
    return result["device"]


def stage_hours(args: CostArguments, root_tokens: int) -> dict[str, tuple[float, str, float]]:
    """{stage: (work, its unit, H100-hours)} for the whole build at roots of `root_tokens`."""
    positions = args.positions if args.positions is not None else args.positions_per_token * root_tokens
    queries = args.roots * positions
    verify = (
        queries
        * args.top_k
        * args.distinct_share
        * (args.candidate_tokens + args.last_position_share * root_tokens)
    )
    exact_per_candidate = args.candidate_tokens + args.last_position_share * root_tokens
    screen_candidate = min(args.candidate_tokens, args.screen_context or args.candidate_tokens)
    screen_per_candidate = (screen_candidate + args.screen_window) / args.distinct_share
    screened = screen_per_candidate <= SCREEN_MAX_SHARE * exact_per_candidate
    screened_share = (screen_per_candidate / exact_per_candidate + args.screen_pass_rate) if screened else 1.0
    corpus = args.corpus_documents * args.document_tokens
    return {
        "corpus embedding (once)": (corpus, "tokens", corpus / args.embed_tokens_per_s / 3600),
        "entropy": (
            args.roots * root_tokens,
            "tokens",
            args.roots * root_tokens / args.entropy_tokens_per_s / 3600,
        ),
        "query embedding": (
            queries * args.query_tokens,
            "tokens",
            queries * args.query_tokens / args.embed_tokens_per_s / 3600,
        ),
        "index search": (
            queries * args.scan_bytes_per_query,
            "bytes",
            queries * args.scan_bytes_per_query / (args.scan_tb_per_s * 1e12) / 3600,
        ),
        "verification": (verify, "tokens", verify / args.verify_tokens_per_s / 3600),
        "verification, screened": (
            verify * screened_share,
            "tokens",
            verify * screened_share / args.verify_tokens_per_s / 3600,
        ),
    }


def main(args: CostArguments) -> None:
    if args.from_build:
        ratios_from_build(args)
    source = f"measured, {read_measured_rates(args)}" if args.measured else "measured"
    header = " | ".join(f"L = {length:,}: work / H100-h / node-h" for length in args.root_tokens)
    print(f"| stage ({args.roots:,} roots) | rate per H100 | {header} |")
    print("|---|---|" + "---|" * len(args.root_tokens))
    tables = {length: stage_hours(args, length) for length in args.root_tokens}
    rates = {
        "corpus embedding (once)": f"{args.embed_tokens_per_s:,.0f} tok/s (assumed)",
        "entropy": f"{args.entropy_tokens_per_s:,.0f} tok/s ({source})",
        "query embedding": f"{args.embed_tokens_per_s:,.0f} tok/s (assumed)",
        "index search": f"{args.scan_tb_per_s:g} TB/s scanned (assumed)",
        "verification": f"{args.verify_tokens_per_s:,.0f} tok/s ({source})",
        "verification, screened": (
            f"window {args.screen_window}, passage {args.screen_context or 'whole'}, pass rate {args.screen_pass_rate:g}"
        ),
    }
    for stage, rate in rates.items():
        cells = []
        for length in args.root_tokens:
            work, unit, hours = tables[length][stage]
            cells.append(f"{work:.2e} {unit} / {hours:,.1f} / {hours / args.gpus_per_node:,.1f}")
        print(f"| {stage} | {rate} | " + " | ".join(cells) + " |")
    for label, left_out in (("total, exact", "verification, screened"), ("total, screened", "verification")):
        totals = [
            sum(h for stage, (_, _, h) in tables[length].items() if stage != left_out)
            for length in args.root_tokens
        ]
        print(
            f"| {label} | | "
            + " | ".join(f"{t:,.0f} H100-h / {t / args.gpus_per_node:,.0f} node-h" for t in totals)
            + " |"
        )
    print_layouts(
        args,
        {
            length: sum(h for stage, (_, _, h) in tables[length].items() if stage != "verification, screened")
            for length in args.root_tokens
        },
    )


def layout_node_hours(args: CostArguments, gpu_hours: float) -> dict[str, tuple[float, float]]:
    """{layout: (GPU node-hours, CPU node-hours)} of a build whose GPU stages take `gpu_hours` H100-hours."""
    index_hours = args.corpus_documents / args.index_vectors_per_s / 3600
    publish_hours = args.published_tokens / args.publish_tokens_per_s / 3600
    load_hours = args.lm_load_minutes / 60
    gpn, ranks = args.gpus_per_node, args.gang_nodes * args.gpus_per_node
    root_tasks = -(-args.roots // args.shard_size)
    gang = gpu_hours / gpn + ranks * load_hours / gpn + args.gang_nodes * (index_hours + publish_hours)
    return {
        f"torchrun / accelerate gang, {args.gang_nodes} GPU nodes": (gang, 0.0),
        f"datatrove, a task per root shard ({root_tasks:,})": (
            gpu_hours / gpn + (root_tasks * load_hours + index_hours) / gpn,
            publish_hours,
        ),
        f"datatrove, --executor_tasks {ranks}": (
            gpu_hours / gpn + (ranks * load_hours + index_hours) / gpn,
            publish_hours,
        ),
    }


def print_layouts(args: CostArguments, gpu_hours: dict[int, float]) -> None:
    """The node-hours of each layout (`layout_node_hours`) for the GPU-hours of each root length."""
    print(f"\n| layout | {' | '.join(f'L = {length:,}: GPU / CPU node-h' for length in gpu_hours)} |")
    print("|---|" + "---|" * len(gpu_hours))
    layouts = {length: layout_node_hours(args, hours) for length, hours in gpu_hours.items()}
    for layout in layouts[next(iter(gpu_hours))]:
        cells = [
            f"{layouts[length][layout][0]:,.1f} / {layouts[length][layout][1]:,.1f}" for length in gpu_hours
        ]
        print(f"| {layout} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    (arguments,) = HfArgumentParser((CostArguments,)).parse_args_into_dataclasses()
    main(arguments)
