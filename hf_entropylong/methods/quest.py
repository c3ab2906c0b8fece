"""The Quest baseline (query-centric synthesis, Gao et al. 2024): keywords → fill.

Quest predicts queries for every document with a doc2query model, extracts keywords from the queries, groups the
documents by keyword and concatenates each group's documents, shuffled, into whole training rows; a group larger
than a row is split into several rows. Reproduced:

- Queries: with `quest_query_model` (a Hub id or local path of a doc2query-style sequence-to-sequence model, e.g.
  doc2query/msmarco-t5-base-v1), `quest_queries_per_document` queries are sampled per document in batches of
  `quest_query_batch_size` on the rank's device, seeded; keywords are RAKE's over those queries. This is what
  `method: quest` means in a comparison. Without a model (offline) keywords are RAKE's over the document text
  itself (`quest_keywords_per_document` per 2,048 characters, so a long root covers its several topics): not
  Quest's queries, so such a build is shown as "keyword groups" on its card, in its summary and in
  `hf-entropylong report` (`publish.counts.method_label`), never as Quest.
- Keywords: RAKE (Rose et al. 2010: candidate phrases cut at stop words and punctuation, word score degree over
  frequency, phrase score the sum), the `quest_keywords_per_document` best of each document. A keyword found in
  more documents than the cap is too generic to group by ("commonly used"), one found in a single document groups
  nothing: both are filtered out. The cap is `quest_max_keyword_share` of the corpus when set; unset, it is the
  documents that fill `KEYWORD_ROWS` rows at the corpus's mean document length in tokens (measured when the
  groups are made), so that a kept keyword's group can fill rows: a cap of 1% of 2,000 Wikipedia summaries
  (20 documents, ~2K tokens) could never fill an 8K row.
- Groups: each corpus document joins one group, that of its best keyword that passed the filter, so groups are
  disjoint (`keyword_groups`). Each group is shuffled once (seeded by the keyword) and partitioned into disjoint
  parts of consecutive documents, each filling one row (`max_seq_length` tokens; the last part may fall short).
- Rows: a root's row is [one part of its best non-singleton group; root], joined as plain text by "\n\n" (the
  released LiteLong concatenation), tokenized once and cut at the start (`methods.common.fill_rows`). The part is
  chosen by a stable hash of the root's id, so roots sharing a group take different parts (unless there are more
  roots than parts); a part that cannot fill the row (the group's last, or documents excluded) is followed by a part
  of the root's next non-singleton group; a root whose groups cannot fill the row is dropped with the status
  `too_short`.

Where this differs: Quest builds rows from groups alone; here every row is tied to one of the shared roots (the
same roots as every method, for side-by-side comparison), which ends the row. The root's keywords come from the
same extraction as the corpus's. Every placed document excludes the root itself and near-copies of it
(`index.exclusion`, at `near_duplicate_threshold`).
"""

from __future__ import annotations

import functools
import math
import random
import re
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import ClassVar

import datasets
import numpy as np

from ..index.exclusion import ExclusionSettings, exclusion
from ..settings import require_positive, setting
from ..stages import Stage
from .common import (
    FILL_MARGIN,
    FILL_STAGE,
    FIRST_COLUMNS,
    FIRST_DROP_REASONS,
    POSITION,
    complete,
    finish_row,
    start_first_stage,
    token_at,
    token_lengths,
)


@dataclass
class QuestSettings:
    """The quest baseline."""

    output_neutral: ClassVar[tuple[str, ...]] = ("quest_query_batch_size",)

    quest_keywords_per_document: int = setting(
        10,
        help="quest: best RAKE keywords of each document (its group is the best one that passes the filter).",
    )
    quest_max_keyword_share: float | None = setting(
        None,
        help="quest: keywords found in more than this share of the corpus documents are too generic to group by; "
        "unset: more than the documents that fill 4 rows (measured on the corpus).",
    )
    quest_query_model: str | None = setting(
        None,
        help="quest: a doc2query-style seq2seq model (Hub id or path) whose predicted queries give the keywords; "
        "unset: RAKE over the document text (offline).",
    )
    quest_queries_per_document: int = setting(
        5, help="quest: queries sampled per document by quest_query_model."
    )
    quest_query_batch_size: int = setting(32, help="quest: documents per generation batch.")

    def __post_init__(self):
        require_positive(
            self, "quest_keywords_per_document", "quest_queries_per_document", "quest_query_batch_size"
        )
        if self.quest_max_keyword_share is not None and not 0 < self.quest_max_keyword_share <= 1:
            raise ValueError(
                f"quest_max_keyword_share must be in (0, 1], got {self.quest_max_keyword_share}."
            )


@dataclass
class KeywordStageSettings(QuestSettings, ExclusionSettings):
    """What the keywords stage reads: the quest settings and the near-copy threshold."""

    def __post_init__(self):
        QuestSettings.__post_init__(self)
        ExclusionSettings.__post_init__(self)


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


@functools.cache
def _query_model(name: str, device: str | None):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from ..models import resolve_model

    path = resolve_model(name)
    model = AutoModelForSeq2SeqLM.from_pretrained(path).eval()
    return AutoTokenizer.from_pretrained(path), model.to(device) if device else model


def predict_queries(
    texts: list[str], settings: QuestSettings, device: str | None, seed: int
) -> list[list[str]]:
    """`quest_queries_per_document` queries per text from `quest_query_model`, sampled (top-k 10, doc2query's
    decoding) in batches of `quest_query_batch_size`, seeded by `seed`."""
    import torch

    tokenizer, model = _query_model(settings.quest_query_model, device)
    queries, n = [], settings.quest_queries_per_document
    for start in range(0, len(texts), settings.quest_query_batch_size):
        batch = tokenizer(
            texts[start : start + settings.quest_query_batch_size],
            truncation=True,
            max_length=512,
            padding=True,
            return_tensors="pt",
        ).to(model.device)
        torch.manual_seed(seed + start)
        with torch.inference_mode():
            generated = model.generate(
                **batch, max_new_tokens=64, do_sample=True, top_k=10, num_return_sequences=n
            )
        decoded = tokenizer.batch_decode(generated, skip_special_tokens=True)
        queries += [decoded[i : i + n] for i in range(0, len(decoded), n)]
    return queries


KEYWORD_SEGMENT_CHARS = 2048
"""Without a query model, a text keeps `quest_keywords_per_document` keywords per this many characters: a long
document covers several topics (Quest predicts queries for each segment of a long document)."""


def document_keywords(
    texts: list[str], settings: QuestSettings, device: str | None = None, seed: int = 0
) -> list[list[str]]:
    """Each text's best RAKE keywords, best first: over its predicted queries with a query model, else over it
    (`quest_keywords_per_document` per `KEYWORD_SEGMENT_CHARS` characters begun)."""
    per_text = settings.quest_keywords_per_document
    if settings.quest_query_model:
        queries = predict_queries(texts, settings, device, seed)
        return [[k for k, _ in rake_keywords(". ".join(q), per_text)] for q in queries]
    return [
        [k for k, _ in rake_keywords(text, per_text * max(1, math.ceil(len(text) / KEYWORD_SEGMENT_CHARS)))]
        for text in texts
    ]


KEYWORD_ROWS = 4
"""The default document-frequency cap: a keyword found in more documents than fill this many rows is too generic."""


@dataclass
class KeywordGroups:
    """Each usable keyword's group (the corpus documents whose best kept keyword it is), cut into disjoint parts."""

    parts: dict[str, list[list[int]]]
    """Each group's documents (corpus rows), shuffled once and cut into consecutive parts of one row each."""
    usable: frozenset[str]
    """Keywords that passed the document-frequency filter."""
    cap: int
    """The most documents a usable keyword is found in."""

    @property
    def members(self) -> dict[str, list[int]]:
        """Each group's documents, in their shuffled order."""
        return {keyword: [row for part in parts for row in part] for keyword, parts in self.parts.items()}


_KEYWORD_GROUPS: dict[tuple, KeywordGroups] = {}


def keyword_cap(settings: QuestSettings, num_documents: int, mean_tokens: float, row_tokens: int) -> int:
    """The most documents a keyword may be found in: `quest_max_keyword_share` of the corpus, or (unset) the
    documents of `mean_tokens` that fill `KEYWORD_ROWS` rows of `row_tokens`."""
    if settings.quest_max_keyword_share is not None:
        return int(settings.quest_max_keyword_share * num_documents)
    return math.ceil(KEYWORD_ROWS * row_tokens / max(mean_tokens, 1.0))


def partition(rows: list[int], lengths: list[int], row_tokens: int) -> list[list[int]]:
    """`rows` cut, in order, into consecutive parts whose `lengths` just reach `row_tokens` (the last may not)."""
    parts, part, filled = [], [], 0
    for row, length in zip(rows, lengths, strict=True):
        part.append(row)
        filled += length
        if filled >= row_tokens:
            parts.append(part)
            part, filled = [], 0
    return [*parts, part] if part else parts


def keyword_groups(
    corpus: datasets.Dataset, settings: QuestSettings, tokenizer, row_tokens: int, device=None, seed=0
) -> KeywordGroups:
    """The corpus's disjoint keyword groups, each cut into parts of `row_tokens` (computed once per process)."""
    key = (corpus._fingerprint, settings.quest_keywords_per_document, settings.quest_max_keyword_share,
           settings.quest_query_model, settings.quest_queries_per_document, seed, row_tokens,
           tokenizer.name_or_path)  # fmt: skip
    if key not in _KEYWORD_GROUPS:
        keyed = corpus.map(
            lambda batch: {
                "keywords": document_keywords(batch["text"], settings, device, seed),
                "tokens": token_lengths(tokenizer, batch["text"]),
            },
            batched=True,
            batch_size=max(1000, settings.quest_query_batch_size),
            remove_columns=corpus.column_names,
            desc="Keywords of the corpus",
        )
        keywords, tokens = keyed["keywords"], keyed["tokens"]
        cap = keyword_cap(settings, len(corpus), float(np.mean(tokens)) if tokens else 0.0, row_tokens)
        frequency = Counter(k for per_document in keywords for k in set(per_document))
        usable = frozenset(k for k, n in frequency.items() if 2 <= n <= cap)
        groups: dict[str, list[int]] = defaultdict(list)
        for row, per_document in enumerate(keywords):
            best = next((k for k in per_document if k in usable), None)
            if best is not None:
                groups[best].append(row)
        parts = {}
        for keyword, rows in groups.items():
            random.Random(f"{seed}/{keyword}").shuffle(rows)
            parts[keyword] = partition(rows, [tokens[r] for r in rows], math.ceil(FILL_MARGIN * row_tokens))
        _KEYWORD_GROUPS[key] = KeywordGroups(parts, usable, cap)
    return _KEYWORD_GROUPS[key]


def part_of(root_id: str, parts: list[list[int]]) -> list[int]:
    """The part of a group a root's row takes: chosen by a stable hash of its id."""
    return parts[zlib.crc32(root_id.encode()) % len(parts)]


def keyword_documents(batch: dict, settings: KeywordStageSettings, inputs) -> dict:
    """The keywords stage: a part of each of the root's best non-singleton groups, until they fill its row."""
    out, fits, offsets = start_first_stage(batch, inputs)
    groups = keyword_groups(
        inputs.corpus, settings, inputs.tokenizer, inputs.max_seq_length, inputs.device, inputs.seed
    )
    root_keywords = document_keywords(batch["text"], settings, inputs.device, inputs.seed)
    for row, (root_id, text, ok) in enumerate(zip(batch["id"], batch["text"], fits, strict=True)):
        budget = math.ceil(FILL_MARGIN * inputs.max_seq_length) - len(offsets[row])
        documents, positions, excluded = [], [], Counter()
        for keyword in root_keywords[row] if ok else []:
            parts = groups.parts.get(keyword, ())
            if sum(map(len, parts)) < 2 or budget <= 0:  # singleton groups make no row
                continue
            match = re.search(r"\s+".join(map(re.escape, keyword.split())), text, flags=re.IGNORECASE)
            start, end = match.span() if match else (-1, -1)
            token = token_at(offsets[row], start) if match else -1
            drawn = part_of(root_id, parts)
            found = inputs.corpus[drawn]
            placed_here = 0
            for corpus_row, corpus_id, corpus_text, length in zip(
                drawn, found["id"], found["text"], token_lengths(inputs.tokenizer, found["text"]), strict=True
            ):
                if budget <= 0:
                    break
                reason = exclusion(root_id, text, corpus_id, corpus_text, inputs.same_source,
                                   settings.near_duplicate_threshold)  # fmt: skip
                if reason:
                    excluded[reason] += 1
                    continue
                documents.append((corpus_row, corpus_id, float("nan"), [token] if token >= 0 else []))
                budget -= length
                placed_here += 1
            if placed_here:
                positions.append(
                    complete({"token_index": token, "char_start": start, "char_end": end,
                              "token": text[start:end], "query": keyword}, POSITION)
                )  # fmt: skip
        finish_row(out, row, positions, documents, excluded)
        if ok and documents and budget > 0:
            out["status"][row] = "too_short"
    return out


KEYWORD_STAGE = Stage(
    name="keywords",
    settings=KeywordStageSettings,
    inputs=("tokenizer", "corpus", "max_seq_length", "seed", "same_source", "device"),
    columns=FIRST_COLUMNS,
    drop_reasons=(*FIRST_DROP_REASONS, "too_short"),
    function=keyword_documents,
    rows_per_call=64,
    batch_size_setting="quest_query_batch_size",
)

STAGES = (KEYWORD_STAGE, FILL_STAGE)
