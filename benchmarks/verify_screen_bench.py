"""The verification screen (`verify_screen`) against exact verification: LM tokens and recall, on real roots.

`--make_roots DIR` writes a set of Linux-documentation roots (Debian `linux-doc`, as `linux_doc_corpus.py`) through
the entropy and retrieval stages, with its corpus, to DIR:

- `--cuts_per_root N` (> 0): a set rich in positives. In each document of [`--min_tokens`, `--max_tokens`) tokens,
  a *term* is a word a reader must have been told: an identifier (with `_`, a digit or an inner capital: `kmalloc`
  is not one, `GFP_KERNEL` and `ioctl2` are), or a number of three or more digits. Each paragraph (blank-line
  separated, `--min_cut_chars` to `--max_cut_chars` characters) scores the later mentions of the terms it is the
  first to use; the N best (none the document's first paragraph, no two adjacent) are cut out into the corpus
  and the rest of the document is the root. A later mention lost its definition: the model is unsure there and
  the cut passage resolves it. Positions: the root's high-entropy tokens (H > μ + `--mention_alpha`·σ) inside the
  first mention in the root of a cut term (later mentions have the term in their own prefix), at most
  `--mention_positions` of them, highest entropy first, then up to `--other_positions` other tokens of H > μ + 2σ.
- `--cuts_per_root 0`: whole documents, `--num_roots` of them spread over equal length bins, each with its
  `--other_positions` highest-entropy positions (the long-documents recipe's way).

The corpus (`corpus.jsonl`; the roots are also in `roots.jsonl`, for `long_root_ablation.py`): the cut passages and `--num_passages` passages (whole lines, ≤ `--max_cut_chars`
characters, NExtLong's chunker) of the documents not drawn as roots. Retrieval: all-MiniLM-L6-v2 (128 tokens),
a Flat index, top `--top_k`, the root's near-copies excluded (the recipe's settings otherwise).

`--measure DIR...` verifies every (position, candidate) pair of each set exactly (`roots_context_scores`, the
builder's forwards) and screens it through each local root window of `--windows` (and each with the candidate cut
to its passage nearest the query, for each length of `--passages`: `verify_screen_context`), then, for each screen
and threshold of `--thresholds`, counts what the cascade would do (`stages/verify.py`: a candidate with a
position at screen ΔI ≥ the threshold, or not worth screening, is verified exactly at all its positions):

- LM tokens: screen + exact re-check against the exact verification, both as the exact minimum (Σ of the
  planned sequences, no padding; the builder forwards ≤ 1.1× of it);
- recall of the exact verification's kept (position, candidate) pairs and kept contexts (precision is 1 by
  construction: every kept pair is decided exactly);
- the screen's pass rate: candidates screened that go on to the exact verification.

A DIR may also be a published build (its `dependencies` config, candidates from the embedded corpus: the demo).
Scores are cached in DIR/screen_scores-<dtype>.json (a rerun computes only the missing windows).

    python benchmarks/verify_screen_bench.py --make_roots outputs/screen-cut --cuts_per_root 3
    python benchmarks/verify_screen_bench.py --make_roots outputs/screen-whole --cuts_per_root 0 --min_tokens 1000
    python benchmarks/verify_screen_bench.py --measure outputs/screen-cut outputs/screen-whole outputs/demo

An 8B-class LM on a GPU (the set keeps its LM in DIR/lm.txt; its positions are that tokenizer's):

    python benchmarks/verify_screen_bench.py --make_roots outputs/screen-8b --lm meta-llama/Meta-Llama-3-8B \
        --dtype bfloat16 --num_roots 40 && python benchmarks/verify_screen_bench.py --measure outputs/screen-8b \
        --dtype bfloat16 --batch_size 4

Prints Markdown tables.
"""

from __future__ import annotations

import json
import random
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import datasets
import numpy as np
from tqdm import tqdm
from transformers import HfArgumentParser

from hf_entropylong.index.corpus_index import embed_texts, new_index
from hf_entropylong.methods.nextlong import meta_chunks
from hf_entropylong.models import (
    EMBEDDED_CORPUS,
    EMBEDDED_EMBEDDER,
    EMBEDDED_LM,
    context_window,
    load_causal_lm,
    load_embedder,
    load_tokenizer,
)
from hf_entropylong.sources import load_text_source
from hf_entropylong.stages.context_scores import RootCandidates, roots_context_scores
from hf_entropylong.stages.entropy import ENTROPY_STAGE, EntropySettings
from hf_entropylong.stages.retrieval import RETRIEVAL_STAGE, RetrievalStageSettings
from hf_entropylong.stages.screen import planned_tokens, screen_entropies, screen_tokens, worth_screening
from hf_entropylong.stages.verify import delta_i

sys.path.insert(0, str(Path(__file__).resolve().parent))
from builder_bench import load_build  # noqa: E402
from linux_doc_corpus import find_doc_dir, read_documents  # noqa: E402

WORD = re.compile(r"0x[0-9a-fA-F]+|[A-Za-z_][A-Za-z0-9_]*|\d{3,}")
PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")


@dataclass
class ScreenArguments:
    make_roots: str = field(default="", metadata={"help": "Write a set of roots to this folder."})
    measure: list[str] = field(
        default_factory=list, metadata={"help": "Sets (or published builds) to measure."}
    )
    doc_dir: str | None = field(default=None, metadata={"help": "linux-doc's Documentation/ folder."})
    num_roots: int = field(default=5, metadata={"help": "make_roots: roots."})
    min_tokens: int = field(default=4300, metadata={"help": "make_roots: shortest document drawn (tokens)."})
    max_tokens: int = field(
        default=5500, metadata={"help": "make_roots: documents drawn are shorter (tokens)."}
    )
    cuts_per_root: int = field(default=3, metadata={"help": "make_roots: passages cut out of each root."})
    min_cut_chars: int = field(default=200, metadata={"help": "make_roots: shortest passage cut."})
    max_cut_chars: int = field(default=900, metadata={"help": "make_roots: longest passage (cut or corpus)."})
    mention_positions: int = field(
        default=12, metadata={"help": "make_roots: positions in mentions, at most."}
    )
    mention_alpha: float = field(
        default=1.0, metadata={"help": "make_roots: a position in a mention has H > μ + mention_alpha·σ."}
    )
    other_positions: int = field(default=4, metadata={"help": "make_roots: other positions, at most."})
    num_passages: int = field(
        default=1500, metadata={"help": "make_roots: corpus passages of other documents."}
    )
    top_k: int = field(
        default=5, metadata={"help": "make_roots: candidates per position (the builder's default)."}
    )
    windows: list[int] = field(
        default_factory=lambda: [64, 256], metadata={"help": "measure: screen windows."}
    )
    passages: list[int] = field(
        default_factory=list,
        metadata={"help": "measure: screen passages (verify_screen_context), each with every window too."},
    )
    thresholds: list[float] = field(
        default_factory=lambda: [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3],
        metadata={"help": "measure: screen ΔI."},
    )
    epsilon: float = field(default=0.4, metadata={"help": "measure: ΔI threshold of the exact decision."})
    recommend: str = field(
        default="64,0.2", metadata={"help": "measure: window[/passage],threshold shown by root length."}
    )
    max_roots: int | None = field(default=None, metadata={"help": "measure: the first roots of a set only."})
    lm: str = field(
        default=EMBEDDED_LM,
        metadata={"help": "make_roots: the causal LM (Hub id or path); a set keeps its own."},
    )
    device: str | None = field(
        default=None, metadata={"help": "The LM's device (default: CUDA when present)."}
    )
    dtype: str = field(default="float32", metadata={"help": "The LM's dtype."})
    batch_size: int = field(default=8, metadata={"help": "Sequences per forward."})
    bin_tokens: int = field(default=2000, metadata={"help": "measure: width of the root-length bins."})
    seed: int = field(default=0, metadata={"help": "Sampling seed."})


def is_term(word: str) -> bool:
    """A word the reader must have been told: an identifier with `_`, a digit or an inner capital, or a number."""
    if word.isdigit() or word.startswith("0x"):
        return True
    return len(word) >= 3 and (
        "_" in word or any(c.isdigit() for c in word) or any(c.isupper() for c in word[1:])
    )


def paragraphs(text: str) -> list[tuple[int, int]]:
    """(start, end) of the blank-line separated paragraphs of `text`."""
    spans, start = [], 0
    for match in PARAGRAPH_BREAK.finditer(text):
        spans.append((start, match.start()))
        start = match.end()
    spans.append((start, len(text)))
    return [(s, e) for s, e in spans if text[s:e].strip()]


def choose_cuts(text: str, spans: list[tuple[int, int]], args: ScreenArguments) -> tuple[list[int], set[str]]:
    """The paragraphs to cut (indices into `spans`) and the terms they introduce that the rest mentions later."""
    words = [[m.group() for m in WORD.finditer(text[s:e]) if is_term(m.group())] for s, e in spans]
    first_seen: dict[str, int] = {}
    for number, found in enumerate(words):
        for word in found:
            first_seen.setdefault(word, number)
    later = Counter(w for number, found in enumerate(words) for w in found if first_seen[w] < number)
    scores = {}
    for number, (start, end) in enumerate(spans):
        if number and args.min_cut_chars <= end - start <= args.max_cut_chars:
            introduced = {w for w in words[number] if first_seen[w] == number and later[w]}
            scores[number] = sum(min(later[w], 5) for w in introduced)
    cuts: list[int] = []
    for number in sorted(scores, key=lambda n: -scores[n]):
        if scores[number] >= 3 and len(cuts) < args.cuts_per_root and all(abs(number - c) > 1 for c in cuts):
            cuts.append(number)
    terms = {w for c in cuts for w in words[c] if first_seen[w] == c and later[w]}
    return sorted(cuts), terms


def make_roots(args: ScreenArguments) -> None:
    """Roots (cut or whole) with their corpus, through the entropy and retrieval stages, saved to `make_roots`."""
    documents = read_documents(find_doc_dir(args.doc_dir))
    tokenizer = load_tokenizer(args.lm)
    rng = random.Random(args.seed)
    likely = {n: t for n, t in documents.items() if 2 * args.min_tokens <= len(t) <= 6 * args.max_tokens}
    lengths = {n: len(tokenizer(t)["input_ids"]) for n, t in tqdm(likely.items(), desc="measuring documents")}
    eligible = sorted(n for n, length in lengths.items() if args.min_tokens <= length < args.max_tokens)
    rng.shuffle(eligible)
    roots, cut_passages, mentions = [], [], []
    bins = np.linspace(args.min_tokens, args.max_tokens, args.num_roots + 1)
    for name in eligible:
        if len(roots) == args.num_roots:
            break
        text = documents[name]
        if not args.cuts_per_root:  # whole documents: one per length bin
            taken = [np.searchsorted(bins, lengths[r["id"]], side="right") for r in roots]
            if np.searchsorted(bins, lengths[name], side="right") in taken:
                continue
            roots.append({"id": name, "text": text})
            mentions.append([])
            continue
        spans = paragraphs(text)
        cuts, terms = choose_cuts(text, spans, args)
        if len(cuts) < args.cuts_per_root:
            continue
        kept = [text[s:e] for number, (s, e) in enumerate(spans) if number not in cuts]
        root = "\n\n".join(kept)
        roots.append({"id": name, "text": root})
        cut_passages += [
            {"id": f"{name}#cut{n}", "text": text[spans[c][0] : spans[c][1]]} for n, c in enumerate(cuts)
        ]
        pattern = re.compile(
            r"(?<![\w])(" + "|".join(map(re.escape, sorted(terms, key=len, reverse=True))) + r")(?![\w])"
        )
        first_mentions: dict[str, tuple[int, int]] = {}
        for match in pattern.finditer(root):
            first_mentions.setdefault(match.group(), (match.start(), match.end()))
        mentions.append(sorted(first_mentions.values()))
    if len(roots) < args.num_roots:
        raise SystemExit(f"only {len(roots)} documents fit; lower --num_roots or widen the token range.")
    taken = {r["id"] for r in roots}
    others = [
        {"id": f"{name}#{n}", "text": documents[name][s:e].strip()}
        for name in sorted(set(documents) - taken)
        for n, (s, e) in enumerate(meta_chunks(documents[name], args.max_cut_chars))
        if documents[name][s:e].strip()
    ]
    corpus = datasets.Dataset.from_list(
        cut_passages + rng.sample(others, min(args.num_passages, len(others)))
    )
    output = Path(args.make_roots)
    output.mkdir(parents=True, exist_ok=True)
    corpus.to_json(output / "corpus.jsonl", lines=True)
    datasets.Dataset.from_list(roots).to_json(output / "roots.jsonl", lines=True)
    (output / "lm.txt").write_text(args.lm)

    lm = load_causal_lm(args.lm, dtype=args.dtype, device=args.device)
    embedder = load_embedder(EMBEDDED_EMBEDDER)
    embedder.max_seq_length = 128  # as the recipes
    index = new_index(embedder.get_embedding_dimension(), "Flat")
    index.add(embed_texts(embedder, corpus["text"], show_progress_bar=True))
    inputs = SimpleNamespace(
        tokenizer=tokenizer, lm=lm, lm_window=context_window(lm), max_seq_length=8192, embedder=embedder,
        embed_batch_size=64, index=index, corpus=corpus, same_source=False,
    )  # fmt: skip
    batch = {"id": [r["id"] for r in roots], "text": [r["text"] for r in roots]}
    alpha = min(args.mention_alpha, EntropySettings.alpha) if args.cuts_per_root else EntropySettings.alpha
    batch.update(ENTROPY_STAGE.function(batch, EntropySettings(alpha=alpha), inputs))
    in_mention = []
    for number, positions in enumerate(batch["positions"]):
        inside = [p for p in positions if any(s <= p["char_start"] < e for s, e in mentions[number])]
        high = batch["entropy_mean"][number] + EntropySettings.alpha * batch["entropy_std"][number]
        rest = [p for p in positions if p not in inside and p["entropy"] > high]
        best = sorted(inside, key=lambda p: -p["entropy"])[: args.mention_positions]
        best += sorted(rest, key=lambda p: -p["entropy"])[: args.other_positions]
        batch["positions"][number] = sorted(best, key=lambda p: p["token_index"])
        in_mention.append(min(len(inside), args.mention_positions))
    batch.update(RETRIEVAL_STAGE.function(batch, RetrievalStageSettings(top_k=args.top_k), inputs))
    datasets.Dataset.from_dict(batch).save_to_disk(str(output / "rows"))
    cut_hits = sum(
        h["corpus_id"].rsplit("#", 1)[0] == r
        for r, hits in zip(batch["id"], batch["retrieved"], strict=True)
        for h in hits
        if "#cut" in h["corpus_id"]
    )
    print(
        f"{len(roots)} roots of {min(batch['num_tokens']):,}-{max(batch['num_tokens']):,} tokens, "
        f"{len(cut_passages)} cut passages + {len(corpus) - len(cut_passages)} other passages -> {output}; "
        f"{sum(map(len, batch['positions']))} positions ({sum(in_mention)} in mentions of cut terms), "
        f"{sum(map(len, batch['retrieved']))} (position, candidate) pairs, {cut_hits} of them a passage cut from "
        "the same root"
    )


def load_set(path: str, tokenizer) -> list:
    """The roots of a set made by `--make_roots`, or of a published build (embedded corpus)."""
    folder = Path(path)
    if (folder / "rows").is_dir():
        corpus, _ = load_text_source(str(folder / "corpus.jsonl"), role="corpus")
        return load_build(str(folder / "rows"), tokenizer, corpus)
    corpus, _ = load_text_source(EMBEDDED_CORPUS, role="corpus")
    return load_build(path, tokenizer, corpus)


def screen_of(label: str) -> tuple[int, int | None]:
    """(window, passage) of a screen's label: "64" or "64/128"."""
    window, _, passage = label.partition("/")
    return int(window), int(passage) if passage else None


def scored(model, root, screen: str | None, batch_size: int) -> tuple[list, int]:
    """Per candidate of `root`: its entropies at its positions with it prepended, exactly or through `screen`
    (then only for the candidates worth screening, None for the others); and the LM tokens that took."""
    request = RootCandidates(root.root_ids, list(root.contexts.values()), list(root.candidates.values()))
    window = context_window(model)
    if screen is None:
        found = roots_context_scores(model, [request], batch_size)[0]
        return [f.entropy.tolist() for f in found], sum(planned_tokens(request, window))
    root_window, passage = screen_of(screen)
    chosen = worth_screening(request, window, root_window, passage)
    picked = [i for i, keep in enumerate(chosen) if keep]
    request = RootCandidates(
        request.root_ids, [request.context_ids[i] for i in picked], [request.positions[i] for i in picked]
    )
    found = iter(screen_entropies(model, [request], root_window, passage, batch_size)[0])
    tokens = sum(screen_tokens(request, window, root_window, passage))
    return [next(found).tolist() if keep else None for keep in chosen], tokens


def set_lm(path: str) -> str:
    """The causal LM a set was made with (`--lm`; published builds and older sets: the embedded one)."""
    recorded = Path(path) / "lm.txt"
    return recorded.read_text().strip() if recorded.is_file() else EMBEDDED_LM


def measure_set(path: str, args: ScreenArguments) -> list[tuple]:
    """Scores of a set, root by root (cached: a run stopped early keeps its finished roots), then one row per
    (window, threshold) and root for the roots fully scored."""
    name = set_lm(path)
    model = load_causal_lm(name, dtype=args.dtype, device=args.device)
    tokenizer = load_tokenizer(name)
    print(
        f"{Path(path).name}: {name} ({args.dtype}, {model.device}); LM tokens are the planned sequences' (no padding)."
    )
    roots = load_set(path, tokenizer)[: args.max_roots]
    cache = Path(path) / f"screen_scores-{args.dtype}.json"
    found = json.loads(cache.read_text()) if cache.is_file() else {}
    screens = [str(w) for w in args.windows] + [f"{w}/{n}" for w in args.windows for n in args.passages]
    labels = [(f"window {screen}", screen) for screen in screens] + [
        ("exact", None)
    ]  # the cheap screens first
    for number, root in enumerate(tqdm(roots, desc=Path(path).name)):
        per_root = found.setdefault(str(number), {})
        for label, screen in labels:
            if label not in per_root:
                start = time.perf_counter()
                per_root[label], tokens = scored(model, root, screen, args.batch_size)
                cache.write_text(json.dumps(found))
                seconds = time.perf_counter() - start
                print(
                    f"root {number} ({len(root.root_ids):,} tokens), {label}: {seconds:.0f} s, {tokens:,} LM tokens, "
                    f"{tokens / seconds:,.0f} tokens/s"
                )
    done = [n for n in range(len(roots)) if all(label in found.get(str(n), {}) for label, _ in labels)]
    roots = [roots[n] for n in done]
    scores = {label: [found[str(n)][label] for n in done] for label, _ in labels}
    window = context_window(model)
    requests = [
        RootCandidates(r.root_ids, list(r.contexts.values()), list(r.candidates.values())) for r in roots
    ]
    exact_tokens = [planned_tokens(request, window) for request in requests]
    gains = {
        label: [
            [
                None
                if values is None
                else delta_i(np.array([r.baseline[p] for p in r.candidates[c]]), values)
                for c, values in zip(r.candidates, per_root, strict=True)
            ]
            for r, per_root in zip(roots, found, strict=True)
        ]
        for label, found in scores.items()
    }
    kept = [[g >= args.epsilon for g in per_root] for per_root in gains["exact"]]
    for screen_label in screens:  # how far below ε the screen must go to keep every kept context
        best = [
            float(np.max(g)) if g is not None else None
            for per_root, screen in zip(kept, gains[f"window {screen_label}"], strict=True)
            for k, g in zip(per_root, screen, strict=True)
            if k.any()
        ]
        screened = sorted(b for b in best if b is not None)
        print(
            f"{Path(path).name}, window {screen_label}: {len(best)} kept contexts, {len(screened)} of them screened; their best "
            f"screen ΔI: {', '.join(f'{b:.2f}' for b in screened) or '–'}"
        )
    rows = []
    for screen_label in screens:
        costs = [screen_tokens(request, window, *screen_of(screen_label)) for request in requests]
        for threshold in args.thresholds:
            for number, root in enumerate(roots):
                screen = gains[f"window {screen_label}"][number]
                passes = [g is None or bool((g >= threshold).any()) for g in screen]
                rows.append(
                    (
                        screen_label, threshold, len(root.root_ids),
                        sum(exact_tokens[number]),
                        sum(t for t, g in zip(costs[number], screen, strict=True) if g is not None)
                        + sum(t for t, p in zip(exact_tokens[number], passes, strict=True) if p),
                        sum(int(k.sum()) for k in kept[number]),
                        sum(int(k.sum()) for k, p in zip(kept[number], passes, strict=True) if p),
                        sum(bool(k.any()) for k in kept[number]),
                        sum(bool(k.any()) for k, p in zip(kept[number], passes, strict=True) if p),
                        sum(g is not None for g in screen),
                        sum(g is not None and p for g, p in zip(screen, passes, strict=True)),
                        len(root.candidates),
                        sum(map(len, root.candidates.values())),
                    )
                )  # fmt: skip
    return rows


def summary(rows: list[tuple]) -> str:
    """One table cell group: tokens ratio, pair and context recall, screen pass rate."""
    exact, cascade, pairs, pairs_kept, contexts, contexts_kept, screened, passed = (
        sum(r[i] for r in rows) for i in range(3, 11)
    )
    recall = f"{pairs_kept}/{pairs} ({pairs_kept / pairs:.1%})" if pairs else "–"
    context_recall = f"{contexts_kept}/{contexts} ({contexts_kept / contexts:.1%})" if contexts else "–"
    pass_rate = f"{passed}/{screened} ({passed / screened:.1%})" if screened else "0/0"
    return f"{exact:,} | {cascade:,} | {exact / cascade:.2f}× | {recall} | {context_recall} | {pass_rate}"


def print_tables(name: str, rows: list[tuple], args: ScreenArguments) -> None:
    lengths = [r[2] for r in rows if r[0] == rows[0][0] and r[1] == rows[0][1]]
    candidates = sum(r[11] for r in rows if r[0] == rows[0][0] and r[1] == rows[0][1])
    pairs = sum(r[12] for r in rows if r[0] == rows[0][0] and r[1] == rows[0][1])
    print(
        f"\n{name}: {len(lengths)} roots of {min(lengths):,}-{max(lengths):,} tokens (mean {np.mean(lengths):,.0f}), "
        f"{candidates} distinct (root, candidate), {pairs} (position, candidate) pairs; ε {args.epsilon}"
    )
    header = (
        "| LM tokens exact | LM tokens cascade | exact / cascade | kept pairs found | kept contexts found "
        "| screen pass rate (candidates) |"
    )
    print(f"| window | candidate passage | screen ΔI ≥ {header}")
    print("|---|---|---|---|---|---|---|---|---|")
    for screen_label in dict.fromkeys(r[0] for r in rows):
        window, passage = screen_of(screen_label)
        for threshold in args.thresholds:
            group = [r for r in rows if r[:2] == (screen_label, threshold)]
            print(f"| {window} | {passage or 'whole'} | {threshold:g} | " + summary(group) + " |")
    w, threshold = args.recommend.split(",")
    chosen = [r for r in rows if r[:2] == (w, float(threshold))]
    print(f"\n{name}, screen {w} (window[/passage]), screen ΔI ≥ {threshold}, by root length:")
    print(f"| root tokens | roots {header}")
    print("|---|---|---|---|---|---|---|---|")
    for start in sorted({r[2] // args.bin_tokens * args.bin_tokens for r in chosen}):
        group = [r for r in chosen if start <= r[2] < start + args.bin_tokens]
        print(f"| {start:,}-{start + args.bin_tokens - 1:,} | {len(group)} | " + summary(group) + " |")


def main(args: ScreenArguments) -> None:
    if args.make_roots:
        make_roots(args)
        return
    for path in args.measure:
        print_tables(Path(path).name, measure_set(path, args), args)


if __name__ == "__main__":
    (arguments,) = HfArgumentParser((ScreenArguments,)).parse_args_into_dataclasses()
    main(arguments)
