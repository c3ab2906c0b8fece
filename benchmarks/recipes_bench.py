"""The data recipes side by side on the same inputs, and NExtLong's chunker against the released behaviour.

Builds every method (`--methods`) from the same roots, corpus, models, seed and row length, sharing one cache, and
prints per method: rows, the share of rows at full length (no padding), the attention spans' length (each row's
`seq_lengths`, the padding tail left out) and the dependency distances (tokens between a placed context and the
root position it serves; NExtLong: between consecutive root chunks), median and 90th percentile.

Then the chunker: on the same texts (the corpus documents, and `--joined` documents made of 2-8 corpus documents
one per line, at `meta_chunk_chars` 2,048 and 256), the non-blank chunk spans of `methods.nextlong.text_chunks`
against those of the chunking the NExtLong authors describe (lines never cut; each chunk the longest run of whole
lines whose summed length stays within the limit, or one longer line alone), compared as exact (start, end) spans:
the texts whose chunk lists are equal, and the share of spans both give (|A ∩ B| / |A ∪ B|).

    nice -n 19 python benchmarks/recipes_bench.py --corpus_size 2000 --num_roots 20 --max_seq_length 2048

Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path

import numpy as np
from datasets import load_dataset

from hf_entropylong.builder import build, demo_config
from hf_entropylong.methods import METHODS
from hf_entropylong.methods.nextlong import ChunkSettings, text_chunks
from hf_entropylong.sources import load_text_source


def described_chunks(text: str, max_chars: int) -> list[tuple[int, int]]:
    """The chunking the authors describe, as spans: from each line on, the longest run of whole lines whose summed
    length (newlines not counted) stays within `max_chars`, or the line alone when it is longer; blank runs left out."""
    lines, start = [], 0
    for line in text.split("\n"):
        lines.append((start, start + len(line)))
        start += len(line) + 1
    spans, first = [], 0
    while first < len(lines):
        last, filled = first, lines[first][1] - lines[first][0]
        while last + 1 < len(lines) and filled + lines[last + 1][1] - lines[last + 1][0] <= max_chars:
            last += 1
            filled += lines[last][1] - lines[last][0]
        spans.append((lines[first][0], lines[last][1]))
        first = last + 1
    return [(a, b) for a, b in spans if text[a:b].strip()]


def chunker_agreement(texts: list[str], max_chars: int) -> tuple[int, int, int, int]:
    """Texts whose chunk spans are equal, spans both give, spans either gives, and spans only the description
    gives, over `texts`."""
    equal = both = either = described_only = 0
    for text in texts:
        described = set(described_chunks(text, max_chars))
        ours = set(text_chunks(text, ChunkSettings(meta_chunk_chars=max_chars)))
        equal += described == ours
        both += len(described & ours)
        either += len(described | ours)
        described_only += len(described - ours)
    return equal, both, either, described_only


def percentiles(values) -> str:
    values = np.asarray(list(values), dtype=float)
    if not len(values):
        return "–"
    return f"{np.median(values):,.0f} / {np.percentile(values, 90):,.0f}"


def method_row(method: str, folder: Path, max_seq_length: int) -> str:
    rows = load_dataset(str(folder), split="train")
    roots = load_dataset(str(folder), "dependencies", split="train")
    spans = [
        length
        for lengths, padding in zip(rows["seq_lengths"], rows["num_padding_tokens"], strict=True)
        for length in (lengths[:-1] if padding else lengths)
    ]
    full = np.mean([padding == 0 for padding in rows["num_padding_tokens"]])
    distances = [d for row in roots["dependency_distances"] for d in row]
    statuses = json.loads((folder / "stats.json").read_text())["roots_by_status"]
    dropped = ", ".join(f"{s} {n}" for s, n in statuses.items() if s != "ok" and n)
    return (
        f"| {method} | {len(rows)} | {full:.0%} | {len(spans)} | {percentiles(spans)} | "
        f"{percentiles(distances)} | {statuses.get('ok', 0)} ({dropped or 'none'}) |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--corpus_size", type=int, default=2000)
    parser.add_argument("--num_roots", type=int, default=20)
    parser.add_argument("--max_seq_length", type=int, default=2048)
    parser.add_argument("--joined", type=int, default=500)
    parser.add_argument(
        "--quest_max_keyword_share",
        type=float,
        default=None,
        help="Quest's document-frequency cap (a share; default: the documents that fill 4 rows).",
    )
    parser.add_argument("--work_dir", default=None)
    args = parser.parse_args()

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="recipes-bench-"))
    corpus, _ = load_text_source("embedded:wiki-summaries", "train", "text", "id", role="corpus")
    corpus = corpus.shuffle(seed=0).select(range(min(args.corpus_size, len(corpus))))
    corpus_file = work / "corpus.jsonl"
    if not corpus_file.exists():
        corpus.select_columns(["id", "text"]).to_json(str(corpus_file))
    print(f"Corpus: {len(corpus)} Wikipedia summaries; {args.num_roots} roots drawn from it; rows of "
          f"{args.max_seq_length:,} tokens; embedded SmolLM2-135M and all-MiniLM-L6-v2.\n")  # fmt: skip
    print("| method | rows | rows at full length | spans | span length (median / p90) | "
          "dependency distance (median / p90) | roots kept (dropped) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for method in args.methods:
        config = demo_config(
            method=method,
            roots=str(corpus_file),
            corpus=[str(corpus_file)],
            num_roots=args.num_roots,
            max_seq_length=args.max_seq_length,
            output_dir=str(work / method),
            cache_dir=str(work / "cache"),
            min_row_fill=0.0,  # every packed row counts, the last under-filled ones too
            quest_max_keyword_share=args.quest_max_keyword_share,
            overwrite_output_dir=True,
        )
        try:
            build(config)
        except ValueError as error:  # nothing to pack
            print(f"| {method} | 0 | – | – | – | – | {str(error)[:80]} |")
            continue
        print(method_row(method, work / method, args.max_seq_length), flush=True)

    texts = list(corpus["text"])
    rng = random.Random(0)
    joined = ["\n".join(rng.sample(texts, rng.randint(2, 8))) for _ in range(args.joined)]
    print("\n| texts | meta_chunk_chars | texts with equal chunk spans | spans (either) | in both | described only "
          "| agreement |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name, group in (("corpus documents", texts), (f"{len(joined)} joined documents", joined)):
        for max_chars in (2048, 256):
            equal, both, either, described_only = chunker_agreement(group, max_chars)
            share = both / either if either else 1.0
            print(f"| {name} | {max_chars} | {equal}/{len(group)} | {either} | {both} | {described_only} | "
                  f"{share:.2%} |")  # fmt: skip


if __name__ == "__main__":
    main()
