"""The Quest baseline (query-centric synthesis, Gao et al. 2024): keywords → units.

Query-centric synthesis (Quest, Gao et al. 2024): documents grouped by the
keywords of their queries, concatenated. Reproduced: RAKE keywords (Rose et al. 2010: candidate phrases cut at
stop words and punctuation, word score degree/frequency, phrase score the sum), an inverted index keyword →
corpus documents, documents of a keyword group concatenated in random order. Simplified, and why: Quest predicts
queries with a doc2query model and extracts keywords from them; here keywords come from the document text
itself (no generative model runs, so the baseline costs no LM pass). Quest fills whole sequences from a group;
here each root, like every method's, forms one unit: up to `quest_documents` documents drawn from the group of
its best keyword (then of its next keywords) precede it, and the unit is packed as EntropyLong's are.
A corpus document is indexed under its `quest_keywords_per_document` best keywords.

Every document placed excludes the root itself and near-copies of it (`index.exclusion`, at
`near_duplicate_threshold`).
"""

from __future__ import annotations

import functools
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass

import datasets
import numpy as np

from ..index.exclusion import ExclusionSettings, exclusion
from ..settings import require_positive, setting
from ..stages import Stage
from ..stages.units import UNIT_STAGE
from .common import FIRST_COLUMNS, FIRST_DROP_REASONS, POSITION, complete, finish_row, start_first_stage


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
class KeywordStageSettings(QuestSettings, ExclusionSettings):
    """What the keywords stage reads: the quest settings and the near-copy threshold."""

    def __post_init__(self):
        QuestSettings.__post_init__(self)
        ExclusionSettings.__post_init__(self)


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


def keyword_documents(batch: dict, settings: KeywordStageSettings, inputs) -> dict:
    """The keywords stage: documents sharing the root's best keywords, drawn at random from each keyword's group."""
    out, fits, offsets = start_first_stage(batch, inputs)
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
                                   settings.near_duplicate_threshold)  # fmt: skip
                if reason:
                    excluded[reason] += 1
                    seen.add(corpus_row)  # counted once per root, whatever keyword groups it is in
                elif len(documents) + len(found) < settings.quest_documents:
                    found.append((corpus_row, corpus_id, float("nan"), [token] if token >= 0 else []))
                    seen.add(corpus_row)
            if found:
                positions.append(
                    complete({"token_index": token, "char_start": start, "char_end": end,
                              "token": text[start:end], "query": keyword}, POSITION)
                )  # fmt: skip
                documents += found
            if len(documents) == settings.quest_documents:
                break
        finish_row(out, row, positions, documents, excluded)
    return out


KEYWORD_STAGE = Stage(
    name="keywords",
    settings=KeywordStageSettings,
    inputs=("tokenizer", "corpus", "max_seq_length", "seed", "same_source"),
    columns=FIRST_COLUMNS,
    drop_reasons=FIRST_DROP_REASONS,
    function=keyword_documents,
    rows_per_call=64,
)

STAGES = (KEYWORD_STAGE, UNIT_STAGE)
