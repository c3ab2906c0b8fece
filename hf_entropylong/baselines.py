"""The paper's ablation and baselines, built from the same roots, corpus, seeds, tokenizer, packing and schema.

`method` picks the stages a build runs (`METHODS`); every other setting means the same for every method, and
each method's per-root table has the columns of EntropyLong's (what a method does not compute is empty or NaN),
so one report reads them all.

- **entropylong** — entropy → retrieval → verify → units (`builder.py`).
- **noverify** — entropy → retrieval → top1 → units. The paper's main ablation: every high-entropy position keeps
  its top-retrieved document, with no ΔI test. The entropy and retrieval stages are EntropyLong's own (same cache).
- **concat** — random → units. The standard baseline: each root is preceded by `concat_documents` corpus
  documents drawn at random (seeded by root), shuffled like EntropyLong's contexts.
- **quest** — keywords → units. Query-centric synthesis (Quest, Gao et al. 2024): documents grouped by the
  keywords of their queries, concatenated. Reproduced: RAKE keywords (Rose et al. 2010: candidate phrases cut at
  stop words and punctuation, word score degree/frequency, phrase score the sum), an inverted index keyword →
  corpus documents, documents of a keyword group concatenated in random order. Simplified, and why: Quest predicts
  queries with a doc2query model and extracts keywords from them; here keywords come from the document text
  itself (no generative model runs, so the baseline costs no LM pass). Quest fills whole sequences from a group;
  here each root, like every method's, forms one unit: up to `quest_documents` documents drawn from the group of
  its best keyword (then of its next keywords) precede it, and the unit is packed as EntropyLong's are.
  A corpus document is indexed under its `quest_keywords_per_document` best keywords.
- **nextlong** — negatives → interleave. Negative document extension (NExtLong, Gao et al. 2025): the root is
  split into meta-chunks; each chunk is followed by `negatives_per_chunk` hard negatives, the corpus documents
  nearest to it, so the model must reach back past look-alike distractors to continue the document. Reproduced:
  chunking at line breaks into chunks of at most `meta_chunk_chars` characters (the released chunking; a longer
  line is cut at sentence ends, then at words), negatives by dense search with the chunk as query in the builder's
  FAISS index, interleaving chunk, negatives, chunk, … Simplified: the released pipeline indexes chunks of the
  corpus, this one its whole documents (the builder's one index); the number of negatives is fixed per chunk
  rather than set by a target length (units are packed to the length instead).

Every baseline excludes the root itself and near-copies of it, as retrieval does (`retrieval.exclusion`; concat
and quest at the default threshold). Tables: the documents each method placed are its `verified_contexts`
(`candidates[].verified` = placed; ΔI NaN where not computed); quest's keywords and nextlong's meta-chunks are its
`positions` (entropy NaN, `query` the keyword or the chunk), so a position's candidates are the documents found
for it. `dependency_distances` records the pairs a method claims: verified ones (entropylong), unverified ones
(noverify, quest: the document and the keyword's occurrence), consecutive meta-chunks (nextlong); concat none.
"""

from __future__ import annotations

import functools
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Literal

import datasets
import numpy as np

from .entropy import ENTROPY_STAGE
from .models import encode_document
from .pack import UNIT_COLUMNS, UNIT_STAGE
from .retrieval import RETRIEVAL_STAGE, RetrievalSettings, eligible_neighbours, exclusion, search_corpus
from .stage import Stage, require_positive, setting
from .verify import VERIFY_STAGE

METHOD_NAMES = ("entropylong", "noverify", "concat", "quest", "nextlong")


@dataclass
class MethodSettings:
    """Which data recipe the build makes: EntropyLong, its ablation, or a baseline (on identical inputs)."""

    method: Literal["entropylong", "noverify", "concat", "quest", "nextlong"] = setting(
        "entropylong",
        help="entropylong (the paper's method), noverify (top-1 retrieved document per position, no ΔI test), "
        "concat (random documents), quest (documents sharing keywords), nextlong (meta-chunks interleaved with "
        "hard negatives). See hf_entropylong/baselines.py.",
    )

    def __post_init__(self):
        if self.method not in METHOD_NAMES:
            raise ValueError(f"method must be one of {', '.join(METHOD_NAMES)}; got {self.method!r}.")


@dataclass
class ConcatSettings:
    """The concat baseline."""

    concat_documents: int = setting(3, help="concat: random corpus documents placed before each root.")

    def __post_init__(self):
        require_positive(self, "concat_documents")


@dataclass
class QuestSettings:
    """The quest baseline."""

    quest_documents: int = setting(3, help="quest: documents sharing the root's keywords placed before it.")
    quest_keywords_per_document: int = setting(
        10, help="quest: best RAKE keywords under which each corpus document is indexed."
    )

    def __post_init__(self):
        require_positive(self, "quest_documents", "quest_keywords_per_document")


@dataclass
class NExtLongSettings:
    """The nextlong baseline."""

    meta_chunk_chars: int = setting(2048, help="nextlong: characters per meta-chunk, at most.")
    negatives_per_chunk: int = setting(2, help="nextlong: hard negatives placed after each meta-chunk.")

    def __post_init__(self):
        require_positive(self, "meta_chunk_chars", "negatives_per_chunk")


@dataclass
class NegativeSearchSettings(NExtLongSettings, RetrievalSettings):
    """What the negatives stage reads: the nextlong settings and the retrieval ones (prompt, nprobe, threshold)."""


@dataclass
class NoSettings:
    """A stage with no setting of its own."""


NEAR_DUPLICATE_THRESHOLD = RetrievalSettings.near_duplicate_threshold
_POSITION = ENTROPY_STAGE.columns["positions"].feature
_CANDIDATE = VERIFY_STAGE.columns["candidates"].feature
_CONTEXTS = {name: VERIFY_STAGE.columns[name] for name in ("candidates", "verified_contexts")}
_EXCLUDED = {
    name: RETRIEVAL_STAGE.columns[name] for name in ("num_excluded_self", "num_excluded_near_duplicate")
}


def complete(record: dict, struct: dict) -> dict:
    """`record` with every field of `struct` it lacks: NaN for floats, -1 for integers, "" for strings."""
    missing = {}
    for name, feature in struct.items():
        if name not in record:
            kind = feature.dtype
            missing[name] = float("nan") if kind.startswith("float") else -1 if kind.startswith("int") else ""
    return {**record, **missing}


def _placed(documents: list[tuple[int, str, float, list[int]]]) -> tuple[list[dict], list[dict]]:
    """Candidates and contexts of documents placed unverified: (corpus row, id, similarity, positions served)."""
    candidates = [
        complete({"token_index": p, "corpus_index": row, "corpus_id": cid, "similarity": sim, "verified": True},
                 _CANDIDATE)
        for row, cid, sim, positions in documents for p in positions or [-1]
    ]  # fmt: skip
    contexts = [
        {"corpus_index": row, "corpus_id": cid, "delta_i": float("nan"), "token_indices": positions}
        for row, cid, _, positions in documents
    ]
    return candidates, contexts


# --- noverify ---------------------------------------------------------------------------------------------------


def top_one(batch: dict, settings: NoSettings, inputs) -> dict:
    """The top1 stage: every position keeps its best retrieved document, unverified."""
    out = {"candidates": [], "verified_contexts": []}
    for retrieved in batch["retrieved"]:
        best: dict[int, dict] = {}
        for hit in retrieved:  # best first within each position
            best.setdefault(hit["token_index"], hit)
        served: dict[int, list[int]] = defaultdict(list)
        for position, hit in best.items():
            served[hit["corpus_index"]].append(position)
        out["candidates"].append(
            [complete({**hit, "verified": best[hit["token_index"]] is hit}, _CANDIDATE) for hit in retrieved]
        )
        contexts = [
            {"corpus_index": row, "corpus_id": next(h["corpus_id"] for h in retrieved if h["corpus_index"] == row),
             "delta_i": float("nan"), "token_indices": sorted(positions)}
            for row, positions in served.items()
        ]  # fmt: skip
        out["verified_contexts"].append(sorted(contexts, key=lambda c: min(c["token_indices"])))
    return out


TOP1_STAGE = Stage(
    name="top1",
    settings=NoSettings,
    inputs=(),
    columns=_CONTEXTS,
    drop_reasons=(),
    function=top_one,
)


# --- shared by the baselines that skip the entropy stage ---------------------------------------------------------


def _start(batch: dict, inputs) -> tuple[dict, list[bool], list[list[tuple[int, int]]]]:
    """The columns every first baseline stage writes, with root_too_long marked; which roots fit; and each root's
    token character offsets (the roots are tokenized once, as `models.encode_document` encodes them)."""
    tokenizer = inputs.tokenizer
    encodings = tokenizer(batch["text"], return_offsets_mapping=True)
    documents = [ids + [tokenizer.eos_token_id] for ids in encodings["input_ids"]]
    fits = [len(ids) <= inputs.max_seq_length for ids in documents]
    out = {
        "num_tokens": [len(ids) for ids in documents],
        "status": ["ok" if ok else "root_too_long" for ok in fits],
        "positions": [],
        "candidates": [],
        "verified_contexts": [],
        "num_excluded_self": [],
        "num_excluded_near_duplicate": [],
    }
    return out, fits, encodings["offset_mapping"]


def _finish_row(out: dict, row: int, positions, documents, excluded: Counter) -> None:
    candidates, contexts = _placed(documents)
    out["positions"].append(positions)
    out["candidates"].append(candidates)
    out["verified_contexts"].append(contexts)
    out["num_excluded_self"].append(excluded["self"])
    out["num_excluded_near_duplicate"].append(excluded["near_duplicate"])
    if out["status"][row] == "ok" and not documents:
        out["status"][row] = "no_candidate"


_FIRST_COLUMNS = {
    name: ENTROPY_STAGE.columns[name] for name in ("num_tokens", "positions", "status")
} | _CONTEXTS | _EXCLUDED  # fmt: skip


# --- concat ------------------------------------------------------------------------------------------------------


def random_documents(batch: dict, settings: ConcatSettings, inputs) -> dict:
    """The random stage: `concat_documents` corpus documents per root, drawn with a per-root seed."""
    out, fits, _ = _start(batch, inputs)
    corpus_size = len(inputs.corpus)
    for row, (root_id, text, ok) in enumerate(zip(batch["id"], batch["text"], fits, strict=True)):
        rng, documents, excluded, drawn = random.Random(f"{inputs.seed}/{root_id}"), [], Counter(), set()
        attempts = min(corpus_size, 8 * settings.concat_documents) if ok else 0
        while len(documents) < settings.concat_documents and len(drawn) < attempts:
            corpus_row = rng.randrange(corpus_size)
            if corpus_row in drawn:
                continue
            drawn.add(corpus_row)
            corpus_id, corpus_text = (inputs.corpus[corpus_row][name] for name in ("id", "text"))
            reason = exclusion(
                root_id, text, corpus_id, corpus_text, inputs.same_source, NEAR_DUPLICATE_THRESHOLD
            )
            if reason:
                excluded[reason] += 1
            else:
                documents.append((corpus_row, corpus_id, float("nan"), []))
        _finish_row(out, row, [], documents, excluded)
    return out


RANDOM_STAGE = Stage(
    name="random",
    settings=ConcatSettings,
    inputs=("tokenizer", "corpus", "max_seq_length", "seed", "same_source"),
    columns=_FIRST_COLUMNS,
    drop_reasons=("root_too_long", "no_candidate"),
    function=random_documents,
    rows_per_call=64,
)


# --- quest -------------------------------------------------------------------------------------------------------

ROOT_KEYWORDS = 20
"""A root's best keywords tried, in order, until its documents are found."""
_PHRASE_BREAK = re.compile(r"[^\w\s'-]+")
_TOKEN = re.compile(r"[\w'-]+")


@functools.cache
def _stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def rake_keywords(text: str, limit: int, max_words: int = 2) -> list[tuple[str, float]]:
    """The `limit` best RAKE keywords of `text` (lower-cased phrases of at most `max_words` words) with scores.

    Candidate phrases are the runs of words between stop words and punctuation; a word scores its degree (the
    words it shares phrases with, itself included) over its frequency; a phrase, the sum of its words' scores.
    """
    stop = _stop_words()
    phrases = []
    for fragment in _PHRASE_BREAK.split(text.lower()):
        phrase: list[str] = []
        for word in [*_TOKEN.findall(fragment), ""]:
            if not word or word in stop or word.isdigit() or len(word) < 3:
                if 0 < len(phrase) <= max_words:
                    phrases.append(tuple(phrase))
                phrase = []
            else:
                phrase.append(word)
    frequency, degree = Counter(), Counter()
    for phrase in phrases:
        for word in phrase:
            frequency[word] += 1
            degree[word] += len(phrase)
    scores = {" ".join(p): sum(degree[w] / frequency[w] for w in p) for p in set(phrases)}
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:limit]


_KEYWORD_GROUPS: dict[tuple[str, int], dict[str, np.ndarray]] = {}


def keyword_groups(corpus: datasets.Dataset, keywords_per_document: int) -> dict[str, np.ndarray]:
    """The inverted index keyword → corpus rows, each document under its best keywords (once per process)."""
    key = (corpus._fingerprint, keywords_per_document)
    if key not in _KEYWORD_GROUPS:
        keyed = corpus.map(
            lambda batch: {
                "keywords": [[k for k, _ in rake_keywords(t, keywords_per_document)] for t in batch["text"]]
            },
            batched=True,
            remove_columns=corpus.column_names,
            desc="Keywords of the corpus",
        )
        groups: dict[str, list[int]] = defaultdict(list)
        for row, keywords in enumerate(keyed["keywords"]):
            for keyword in keywords:
                groups[keyword].append(row)
        _KEYWORD_GROUPS[key] = {keyword: np.array(rows) for keyword, rows in groups.items()}
    return _KEYWORD_GROUPS[key]


def _token_at(offsets: list[tuple[int, int]], char: int) -> int:
    return next((t for t, (start, end) in enumerate(offsets) if start <= char < end), -1)


def keyword_documents(batch: dict, settings: QuestSettings, inputs) -> dict:
    """The keywords stage: documents sharing the root's best keywords, drawn at random from each keyword's group."""
    out, fits, offsets = _start(batch, inputs)
    groups = keyword_groups(inputs.corpus, settings.quest_keywords_per_document)
    for row, (root_id, text, ok) in enumerate(zip(batch["id"], batch["text"], fits, strict=True)):
        rng = random.Random(f"{inputs.seed}/{root_id}")
        documents, positions, excluded, seen = [], [], Counter(), set()
        for keyword, _ in rake_keywords(text, ROOT_KEYWORDS) if ok else []:
            members = [int(r) for r in groups.get(keyword, ()) if int(r) not in seen]
            if not members:
                continue
            match = re.search(r"\s+".join(map(re.escape, keyword.split())), text, flags=re.IGNORECASE)
            start, end = match.span() if match else (-1, -1)
            token = _token_at(offsets[row], start)
            found = []
            drawn = rng.sample(members, len(members))[: 4 * settings.quest_documents]
            rows = inputs.corpus[drawn]
            for corpus_row, corpus_id, corpus_text in zip(drawn, rows["id"], rows["text"], strict=True):
                reason = exclusion(root_id, text, corpus_id, corpus_text, inputs.same_source,
                                   NEAR_DUPLICATE_THRESHOLD)  # fmt: skip
                if reason:
                    excluded[reason] += 1
                    seen.add(corpus_row)  # counted once per root, whatever keyword groups it is in
                elif len(documents) + len(found) < settings.quest_documents:
                    found.append((corpus_row, corpus_id, float("nan"), [token] if token >= 0 else []))
                    seen.add(corpus_row)
            if found:
                positions.append(
                    complete({"token_index": token, "char_start": start, "char_end": end,
                              "token": text[start:end], "query": keyword}, _POSITION)
                )  # fmt: skip
                documents += found
            if len(documents) == settings.quest_documents:
                break
        _finish_row(out, row, positions, documents, excluded)
    return out


KEYWORD_STAGE = Stage(
    name="keywords",
    settings=QuestSettings,
    inputs=("tokenizer", "corpus", "max_seq_length", "seed", "same_source"),
    columns=_FIRST_COLUMNS,
    drop_reasons=("root_too_long", "no_candidate"),
    function=keyword_documents,
    rows_per_call=64,
)


# --- nextlong ----------------------------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def meta_chunks(text: str, max_chars: int) -> list[tuple[int, int]]:
    """Character spans of the meta-chunks of `text`: lines grouped up to `max_chars` characters each.

    A line longer than `max_chars` is cut at sentence ends, and a sentence longer than that at word starts.
    """
    pieces = []  # (start, end) spans no longer than max_chars, in order
    for line in re.finditer(r"[^\n]+", text):
        cuts = [line.start()] + [line.start() + m.end() for m in _SENTENCE_END.finditer(line.group())]
        for start, end in zip(cuts, [*cuts[1:], line.end()], strict=True):
            while end - start > max_chars:
                cut = text.rfind(" ", start + 1, start + max_chars + 1)
                cut = cut if cut > start else start + max_chars
                pieces.append((start, cut))
                start = cut
            pieces.append((start, end))
    chunks: list[tuple[int, int]] = []
    for start, end in pieces:
        if chunks and end - chunks[-1][0] <= max_chars:
            chunks[-1] = (chunks[-1][0], end)
        else:
            chunks.append((start, end))
    return chunks


def _chunk_token_starts(offsets: list[tuple[int, int]], chunks: list[tuple[int, int]]) -> list[int]:
    """The root token index where each chunk starts (the first chunk at 0: BOS included)."""
    starts = [0]
    for start, _ in chunks[1:]:
        starts.append(next(t for t, (s, e) in enumerate(offsets) if e > start and s < e))
    return starts


def hard_negatives(batch: dict, settings: NegativeSearchSettings, inputs) -> dict:
    """The negatives stage: the root's meta-chunks, each with its nearest corpus documents (not the root's)."""
    out, fits, offsets = _start(batch, inputs)
    chunks = [meta_chunks(text, settings.meta_chunk_chars) if ok else [] for text, ok in zip(batch["text"], fits, strict=True)]  # fmt: skip
    queries = [
        text[start:end] for text, spans in zip(batch["text"], chunks, strict=True) for start, end in spans
    ]
    scores, hits, corpus_rows = search_corpus(inputs, queries, settings.negatives_per_chunk, settings)
    query = 0
    for row, (root_id, text, spans) in enumerate(zip(batch["id"], batch["text"], chunks, strict=True)):
        positions, documents, excluded = [], [], Counter()
        token_starts = _chunk_token_starts(offsets[row], spans) if spans else []
        for (start, end), token in zip(spans, token_starts, strict=True):
            kept, excluded_here = eligible_neighbours(
                root_id, text, scores[query], hits[query], corpus_rows, settings.negatives_per_chunk,
                inputs.same_source, settings.near_duplicate_threshold, {doc[0] for doc in documents},
            )  # fmt: skip
            excluded.update(excluded_here)
            positions.append(
                complete({"token_index": token, "char_start": start, "char_end": end, "token": "",
                          "query": text[start:end]}, _POSITION)
            )  # fmt: skip
            documents += [(hit, corpus_id, score, [token]) for hit, corpus_id, score in kept]
            query += 1
        _finish_row(out, row, positions, documents, excluded)
    return out


NEGATIVES_STAGE = Stage(
    name="negatives",
    settings=NegativeSearchSettings,
    inputs=("tokenizer", "max_seq_length", "embedder", "embed_batch_size", "index", "corpus", "same_source"),
    columns=_FIRST_COLUMNS,
    drop_reasons=("root_too_long", "no_candidate"),
    function=hard_negatives,
    rows_per_call=64,
    batch_size_setting="embed_batch_size",
)


def interleave(batch: dict, settings: NoSettings, inputs) -> dict:
    """The nextlong units: chunk 1, its negatives, chunk 2, its negatives, … within `max_seq_length`.

    When the unit is too long, negatives are dropped from the last chunk's backwards. The dependency distance of
    two consecutive chunks is the tokens of the negatives between them.
    """
    tokenizer = inputs.tokenizer
    out = {name: [] for name in UNIT_COLUMNS}
    for text, positions, contexts, status in zip(
        batch["text"], batch["positions"], batch["verified_contexts"], batch["status"], strict=True
    ):
        unit, placed, lengths, distances = [], [], [], []
        if status == "ok":
            root = encode_document(tokenizer, text)
            rows = [c["corpus_index"] for c in contexts]
            negatives = [encode_document(tokenizer, t) for t in inputs.corpus[rows]["text"]]
            kept, total = len(contexts), len(root) + sum(map(len, negatives))
            while total > inputs.max_seq_length:
                kept -= 1
                total -= len(negatives[kept])
            starts = [p["token_index"] for p in positions]
            for chunk, (start, end) in enumerate(zip(starts, [*starts[1:], len(root)], strict=True)):
                unit += root[start:end]
                after = [i for i in range(kept) if contexts[i]["token_indices"][0] == start]
                for i in after:
                    unit += negatives[i]
                    placed.append(contexts[i]["corpus_id"])
                    lengths.append(len(negatives[i]))
                if chunk + 1 < len(starts):
                    distances.append(sum(len(negatives[i]) for i in after))
        out["unit_input_ids"].append(unit)
        out["unit_context_ids"].append(placed)
        out["unit_context_lengths"].append(lengths)
        out["num_unit_tokens"].append(len(unit))
        out["num_contexts_trimmed"].append(len(contexts) - len(placed) if status == "ok" else 0)
        out["dependency_distances"].append(distances)
    return out


INTERLEAVE_STAGE = Stage(
    name="interleave",
    settings=NoSettings,
    inputs=("tokenizer", "corpus", "max_seq_length"),
    columns=UNIT_COLUMNS,
    drop_reasons=(),
    function=interleave,
    rows_per_call=64,
)


def method_stages(method: str, entropylong: tuple[Stage, ...]) -> tuple[Stage, ...]:
    """The stages a build of `method` runs; `entropylong` is the method's own pipeline."""
    entropy, retrieval, _, _ = entropylong
    return {
        "entropylong": entropylong,
        "noverify": (entropy, retrieval, TOP1_STAGE, UNIT_STAGE),
        "concat": (RANDOM_STAGE, UNIT_STAGE),
        "quest": (KEYWORD_STAGE, UNIT_STAGE),
        "nextlong": (NEGATIVES_STAGE, INTERLEAVE_STAGE),
    }[method]
