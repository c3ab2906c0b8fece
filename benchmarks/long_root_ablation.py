"""The five data recipes on long roots: what each makes of Linux kernel documents of 4K-7K tokens.

On short roots (the demo's Wikipedia summaries) NExtLong has one meta-chunk to interleave and keyword groups rarely
fill a row, so the baselines cannot show what they do. This builds every method (`--methods`) from the same long
roots and corpus (`benchmarks/linux_doc_corpus.py`: `roots.jsonl` of kernel documents, `passages.jsonl` of the other
kernel documents, `wiki.jsonl` of Wikipedia summaries), the settings of `recipes/build/longdocs.yaml` otherwise
(8,192-token rows, the embedded SmolLM2-135M and all-MiniLM-L6-v2), sharing one cache, and prints one row per
method: roots kept (and dropped, by status), rows and their attention spans, dependency distances (median / p90),
and what the originals would show:

- nextlong: the root's meta-chunks interleaved per row, negatives per row and per chunk, and how many placed
  negatives the passage-level near-copy test (a chunk sharing ≥ 30% of its shingles with the root) would have
  dropped: the hard negatives that excluding only the root's document and copies of the whole root restores;
- quest: the keyword groups a row draws on, their sizes in documents, and documents per row; without a query
  model its rows are keyword groups (`publish.counts.method_label`), and the table says so;
- entropylong / noverify: positions tested, pairs kept, contexts per unit.

    python benchmarks/linux_doc_corpus.py --output_dir outputs/linux-doc --num_roots 6 --min_tokens 4000 \
        --max_tokens 7000 --length_bins 3 --num_passages 2000 --wiki_summaries 2000
    nice -n 10 python benchmarks/long_root_ablation.py --data_dir outputs/linux-doc --work_dir outputs/long-ablation

Roots whose corpus holds what they depend on (`verify_screen_bench.py --make_roots`: passages cut out of each root
into the corpus), more positions, and EntropyLong verified through the screen:

    python benchmarks/long_root_ablation.py --data_dir outputs/screen-rich --corpus outputs/screen-rich/corpus.jsonl \
        --work_dir outputs/long-ablation-rich --max_positions_per_root 24 \
        --set top_k=2 verify_screen=64 verify_screen_context=128 verify_screen_epsilon=0.2

Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
import yaml
from datasets import load_dataset

from hf_entropylong.builder import BuildConfig, build
from hf_entropylong.index.exclusion import is_near_duplicate
from hf_entropylong.methods import METHODS
from hf_entropylong.methods.nextlong import ChunkSettings, text_chunks
from hf_entropylong.methods.quest import QuestSettings, keyword_groups
from hf_entropylong.models import load_tokenizer
from hf_entropylong.publish.counts import method_label
from hf_entropylong.settings import settings_of

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "build" / "longdocs.yaml"


def spread(values) -> str:
    values = np.asarray(list(values), dtype=float)
    return f"{np.median(values):,.0f} / {np.percentile(values, 90):,.0f}" if len(values) else "–"


def corpus_texts(files: list[str]) -> dict[str, str]:
    texts = {}
    for file in files:
        for line in Path(file).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            texts[row["id"]] = row["text"]
    return texts


def nextlong_detail(roots, texts: dict[str, str], config: BuildConfig) -> str:
    """Chunks interleaved per row, negatives per row and per chunk, and the restored hard negatives."""
    ok = [row for row in roots if row["status"] == "ok"]
    chunks_in_row = [
        len(
            {c["token_indices"][0] for c in row["contexts"] if c["corpus_id"] in set(row["unit_context_ids"])}
        )
        for row in ok
    ]
    negatives = [len(row["unit_context_ids"]) for row in ok]
    per_chunk = [n for row in ok for n in Counter(c["token_indices"][0] for c in row["contexts"]).values()]
    settings = ChunkSettings(config.meta_chunk_chars, config.meta_chunk_sentences)
    restored = 0
    for row in ok:
        for corpus_id in row["unit_context_ids"]:
            document, offset = corpus_id.rsplit("@", 1)
            start, end = next(s for s in text_chunks(texts[document], settings) if s[0] == int(offset))
            restored += is_near_duplicate(
                row["root_text"], texts[document][start:end], config.near_duplicate_threshold
            )
    return (
        f"root chunks interleaved per row {spread(chunks_in_row)} (of {spread(len(r['positions']) for r in ok)}); "
        f"negatives per row {spread(negatives)}, per chunk {spread(per_chunk)}; {restored} of {sum(negatives)} "
        "placed negatives share ≥ 30% of their shingles with the root (dropped before, kept now); excluded: "
        f"{sum(roots['num_excluded_self'])} of the root's document, {sum(roots['num_excluded_near_duplicate'])} "
        "copying the whole root"
    )


def quest_detail(roots, corpus, config: BuildConfig) -> str:
    """Keyword groups per row, their sizes and parts, documents per row."""
    groups = keyword_groups(
        corpus,
        settings_of(config, QuestSettings),
        load_tokenizer(config.lm),
        config.max_seq_length,
        seed=config.seed,
    )
    ok = [row for row in roots if row["status"] == "ok"]
    used = [p["query"] for row in ok for p in row["positions"]]
    sizes = [sum(map(len, groups.parts[k])) for k in used]
    parts = [len(groups.parts[k]) for k in used]
    return (
        f"cap {groups.cap} documents; {len(groups.parts)} groups; groups per row {spread(len(r['positions']) for r in ok)}, "
        f"their sizes {spread(sizes)} documents in {spread(parts)} parts; documents per row "
        f"{spread(len(r['unit_context_ids']) for r in ok)}"
    )


def dependency_detail(roots) -> str:
    """Positions and pairs tested, pairs placed, contexts per unit (and how many are passages cut from the root's
    own document, in a set made by `verify_screen_bench.py --make_roots`)."""
    ok = [row for row in roots if row["status"] == "ok"]
    tested = sum(len(r["candidates"]) for r in roots) if "candidates" in roots.column_names else None
    own = sum(i.startswith(f"{r['root_id']}#cut") for r in ok for i in r["unit_context_ids"])
    return (
        f"positions tested {sum(len(r['positions']) for r in roots)}"
        + (f", pairs tested {tested}" if tested is not None else "")
        + f", pairs placed {sum(len(c['token_indices']) for r in ok for c in r['contexts'])}, contexts per unit "
        f"{spread(len(r['unit_context_ids']) for r in ok)} ({own} of them cut from the root's own document), unit "
        f"tokens {spread(r['num_unit_tokens'] for r in ok)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", default="outputs/linux-doc")
    parser.add_argument("--work_dir", default="outputs/long-ablation")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument(
        "--corpus",
        nargs="+",
        default=None,
        help="Corpus files (default: DATA_DIR/passages.jsonl and wiki.jsonl).",
    )
    parser.add_argument("--max_positions_per_root", type=int, default=4)
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="Build settings over the recipe's (YAML values).",
    )
    parser.add_argument("--quest_query_model", default=None, help="A doc2query model: Quest as compared.")
    args = parser.parse_args()

    data, work = Path(args.data_dir), Path(args.work_dir)
    files = args.corpus or [str(data / "passages.jsonl"), str(data / "wiki.jsonl")]
    settings = yaml.safe_load(RECIPE.read_text(encoding="utf-8"))
    overrides = {key: yaml.safe_load(value) for key, _, value in (item.partition("=") for item in args.set)}
    texts = corpus_texts(files)
    corpus = load_dataset("json", data_files=files, split="train")
    print(
        f"Roots: {data / 'roots.jsonl'}; corpus: {len(texts):,} documents ({', '.join(files)}); 8,192-token rows; "
        f"{args.max_positions_per_root} positions per root; over the recipe: {overrides or 'nothing'}.\n"
    )
    print("| method (shown as) | roots kept (dropped) | rows | span length (median / p90) | "
          "dependency distance (median / p90) | what the original would show |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for method in args.methods:
        config = BuildConfig(**{**settings, **dict(
            method=method, roots=str(data / "roots.jsonl"), corpus=files, output_dir=str(work / method),
            cache_dir=str(work / "cache"), max_positions_per_root=args.max_positions_per_root, min_row_fill=0.0,
            quest_query_model=args.quest_query_model, overwrite_output_dir=True, pretty_name=None,
        ), **overrides})  # fmt: skip
        try:
            counts = build(config)
        except ValueError as error:  # nothing to pack
            print(f"| {method} | {str(error)[:80]} | 0 | – | – | – |", flush=True)
            continue
        roots = load_dataset(config.output_dir, "dependencies", split="train")
        rows = load_dataset(config.output_dir, split="train")
        spans = [  # the attention spans, a row's padding tail left out
            n
            for lengths, padding in zip(rows["seq_lengths"], rows["num_padding_tokens"], strict=True)
            for n in (lengths[:-1] if padding else lengths)
        ]
        dropped = ", ".join(f"{s} {n}" for s, n in counts.roots_by_status.items() if s != "ok" and n)
        if method == "nextlong":
            detail = nextlong_detail(roots, texts, config)
        elif method == "quest":
            detail = quest_detail(roots, corpus, config)
        else:
            detail = dependency_detail(roots)
        distances = [d for row in roots["dependency_distances"] for d in row]
        print(
            f"| {method} ({method_label(method, vars(config))}) | {counts.roots_by_status.get('ok', 0)} "
            f"({dropped or 'none'}) | {len(rows)} | {spread(spans)} | {spread(distances)} | {detail} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
