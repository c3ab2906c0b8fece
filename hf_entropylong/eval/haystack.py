"""Text sources for the long-context tasks: haystacks, word pools and QA sets.

RULER (NVIDIA/RULER, commit c3f5e3b) downloads Paul Graham's essays, SQuAD and HotpotQA at set-up and
draws its words from the `wonderwords` package. Here:

- **essay** haystack: one stream of words from a file the user gives (`--haystack`), or, offline by
  default, the embedded Wikipedia summaries (`embedded:wiki-summaries`). A file is either RULER's
  `PaulGrahamEssays.json` (one object `{"text": ...}`, what its `download_paulgraham_essay.py` writes) or
  JSON lines with a `text` field (documents joined in file order). Whitespace is collapsed to single spaces
  and the text split on spaces, as RULER does; a haystack of N words is the first N words, the stream
  repeated when N is larger (as RULER does too), split into sentences so that needles go in at sentence
  boundaries. RULER splits sentences with NLTK's punkt model, a download; here a regular expression splits
  after ., ! or ? followed by a capital, digit or quote. Every result names its haystack (`haystack_name`).
- **noise** haystack: RULER's repeated filler ("The grass is green. The sky is blue. ...").
- **needle** haystack: distractor needles with random keys and values (built by the task itself).
- **words** (from `wonderwords`, as RULER): needle keys are adjective-noun pairs (`key_words`), the
  common-words task draws from the nouns, adjectives and verbs (`common_words`). RULER falls back to a
  larger English word list (its `json/english_words.json`, 8.5 MB, not on PyPI) when a list needs more words
  than wonderwords has (cwe beyond ~64K tokens); here that list is read from `--cwe_words FILE`
  (`word_list`: RULER's JSON object, whose values are the words, or a JSON list), else the fallback is the
  haystack's own vocabulary (`vocabulary`), and results name which one served.
- **QA**: SQuAD (v1 or v2 JSON, unanswerable questions dropped) and HotpotQA (dev distractor JSON) read
  from a local file. Each question keeps its gold paragraphs; every other paragraph is a distractor.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path

from ..models import EMBEDDED_CORPUS, embedded_corpus_file

NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_WORD = re.compile(r"[a-z]{4,10}")
HAYSTACK_FORMATS = "RULER's PaulGrahamEssays.json ({\"text\": ...}) or JSON lines with a 'text' field"


def haystack_name(haystack: str) -> str:
    """How results name a haystack: the embedded name, or the file's name."""
    return haystack if haystack == EMBEDDED_CORPUS else Path(haystack).name


def _read_jsonl(path: Path) -> list[str]:
    texts = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}: line {number} is not valid JSON ({error.msg}).") from error
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise ValueError(f"{path}: line {number} has no string 'text' field.")
            texts.append(row["text"])
    return texts


@lru_cache(maxsize=4)
def haystack_texts(haystack: str = EMBEDDED_CORPUS) -> tuple[str, ...]:
    """The non-empty texts of a haystack (the embedded name or a file), whitespace collapsed, in file order."""
    if haystack == EMBEDDED_CORPUS:
        texts = _read_jsonl(embedded_corpus_file())
    else:
        path = Path(haystack)
        if not path.is_file():
            raise FileNotFoundError(f"Haystack {haystack!r} not found: give {HAYSTACK_FORMATS}.")
        if path.suffix == ".json":
            data = _load_json(path, "Haystack")
            if not isinstance(data, dict) or not isinstance(data.get("text"), str):
                raise ValueError(
                    f"Haystack file {str(path)!r}: expected an object with a string 'text' (RULER's "
                    "PaulGrahamEssays.json); for many documents use JSON lines (.jsonl) with a 'text' field."
                )
            texts = [data["text"]]
        else:
            texts = _read_jsonl(path)
    texts = [" ".join(text.split()) for text in texts]
    texts = [text for text in texts if text]
    if not texts:
        raise ValueError(f"Haystack {haystack!r}: no non-empty text.")
    return tuple(texts)


@lru_cache(maxsize=4)
def essay_words(haystack: str = EMBEDDED_CORPUS) -> tuple[str, ...]:
    """The whole haystack as one stream of space-separated words."""
    return tuple(" ".join(haystack_texts(haystack)).split(" "))


@lru_cache(maxsize=4)
def vocabulary(haystack: str = EMBEDDED_CORPUS) -> tuple[str, ...]:
    """Sorted distinct lower-case alphabetic words (4-10 letters) of the haystack (the cwe fallback)."""
    words = set()
    for text in haystack_texts(haystack):
        words.update(word for word in text.split() if _WORD.fullmatch(word))
    return tuple(sorted(words))


@cache
def word_list(path: str) -> tuple[str, ...]:
    """The words of a word-list file: RULER's `english_words.json` (a JSON object whose values are the words, in
    file order) or a JSON list of words."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(
            f"--cwe_words: word list '{path}' not found (RULER's json/english_words.json)."
        )
    try:
        loaded = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"--cwe_words: {path} is not valid JSON ({error.msg}).") from error
    words = list(loaded.values()) if isinstance(loaded, dict) else loaded
    if not isinstance(words, list) or not words or not all(isinstance(w, str) and w for w in words):
        raise ValueError(
            f"--cwe_words: {path} must be a JSON object of words (RULER's english_words.json) or a list of words."
        )
    return tuple(words)


def extra_words(haystack: str, cwe_words: str | None) -> tuple[str, ...]:
    """cwe's words beyond wonderwords': the `cwe_words` list when given, else the haystack's vocabulary."""
    return word_list(cwe_words) if cwe_words else vocabulary(haystack)


@cache
def _wonderwords(category: str) -> tuple[str, ...]:
    from wonderwords import RandomWord

    return tuple(RandomWord().filter(include_categories=[category]))


def key_words() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """wonderwords' adjectives and nouns (sorted, distinct): RULER's needle keys are `adjective-noun`."""
    return _wonderwords("adjectives"), _wonderwords("nouns")


@lru_cache(maxsize=1)
def common_words() -> tuple[str, ...]:
    """wonderwords' nouns, adjectives and verbs, sorted and distinct: RULER's cwe pool before its shuffle."""
    return tuple(sorted({*_wonderwords("nouns"), *_wonderwords("adjectives"), *_wonderwords("verbs")}))


def split_sentences(text: str) -> list[str]:
    """Sentences of `text`, split after ., ! or ? followed by a capital, digit or quote."""
    return [sentence for sentence in _SENTENCE_END.split(text.strip()) if sentence]


@dataclass
class QASet:
    """Questions with their gold paragraph indices into `docs`, and optional same-article distractors."""

    name: str
    docs: list[str]
    questions: list[dict] = field(default_factory=list)  # {"query", "answers", "gold", "related"}


def _load_json(path: Path, what: str):
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {str(path)!r} not found.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{what} file {str(path)!r} is not valid JSON: {error}.") from error


def load_squad(path: str | Path) -> QASet:
    """SQuAD v1/v2 JSON (`{"data": [{"paragraphs": [{"context", "qas"}]}]}`); unanswerable questions dropped."""
    path = Path(path)
    data = _load_json(path, "SQuAD")
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise ValueError(
            f"SQuAD file {str(path)!r}: expected an object with a 'data' list (SQuAD JSON format)."
        )
    docs: dict[str, int] = {}
    articles = []
    for a, article in enumerate(data["data"]):
        try:
            paragraphs = [(p["context"], p["qas"]) for p in article["paragraphs"]]
        except (KeyError, TypeError) as error:
            raise ValueError(
                f"SQuAD file {str(path)!r}: article {a} lacks 'paragraphs'/'context'/'qas'."
            ) from error
        articles.append(paragraphs)
        for context, _ in paragraphs:
            docs.setdefault(context, len(docs))
    qa = QASet("squad", list(docs))
    for a, paragraphs in enumerate(articles):
        article_docs = [docs[context] for context, _ in paragraphs]
        for context, qas in paragraphs:
            gold = docs[context]
            for q in qas:
                if q.get("is_impossible"):
                    continue
                answers = [answer["text"] for answer in q.get("answers", []) if answer.get("text")]
                if "question" not in q or not answers:
                    raise ValueError(
                        f"SQuAD file {str(path)!r}: article {a} has a question without text or answers."
                    )
                related = [d for d in article_docs if d != gold]
                qa.questions.append(
                    {"query": q["question"], "answers": answers, "gold": [gold], "related": related}
                )
    if not qa.questions:
        raise ValueError(f"SQuAD file {str(path)!r}: no answerable questions.")
    return qa


def load_hotpotqa(path: str | Path) -> QASet:
    """HotpotQA JSON (a list of `{"question", "answer", "context": [[title, [sentences]], ...]}`)."""
    path = Path(path)
    data = _load_json(path, "HotpotQA")
    if not isinstance(data, list):
        raise ValueError(f"HotpotQA file {str(path)!r}: expected a list of questions (HotpotQA JSON format).")
    docs: dict[str, int] = {}
    qa = QASet("hotpotqa", [])
    for i, item in enumerate(data):
        try:
            paragraphs = [f"{title}\n{''.join(sentences)}" for title, sentences in item["context"]]
            query, answer = item["question"], item["answer"]
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(
                f"HotpotQA file {str(path)!r}: item {i} lacks 'question'/'answer'/'context' [[title, sentences]]."
            ) from error
        gold = [docs.setdefault(p, len(docs)) for p in paragraphs]
        qa.questions.append({"query": query, "answers": [answer], "gold": gold, "related": []})
    if not qa.questions:
        raise ValueError(f"HotpotQA file {str(path)!r}: no questions.")
    qa.docs = list(docs)
    return qa
