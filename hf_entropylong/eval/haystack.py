"""Offline text sources for the long-context tasks: haystacks, word lists and QA sets.

RULER builds its haystacks from Paul Graham essays, SQuAD and HotpotQA, all downloaded at set-up. Here
everything comes from what the package can reach offline:

- **essay** haystack: the text of a JSON-lines corpus (default: the embedded Wikipedia summaries,
  `embedded:wiki-summaries`), documents in file order, joined into one stream of words. A haystack of
  N words is the first N words, split into sentences so that needles go in at sentence boundaries.
- **noise** haystack: RULER's repeated filler ("The grass is green. The sky is blue. ...").
- **needle** haystack: distractor needles with random keys and values (built by the task itself).
- **words**: the vocabulary of the corpus (lower-case alphabetic words of 4-10 letters), used for
  needle keys (``adjective-noun``-like pairs of two words, as RULER's `wonderwords` pairs) and for the
  common-words task.
- **QA**: SQuAD (v1 or v2 JSON, unanswerable questions dropped) and HotpotQA (dev distractor JSON) read
  from a local file. Each question keeps its gold paragraphs; every other paragraph is a distractor.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from ..models import EMBEDDED_CORPUS, embedded_corpus_file

NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_WORD = re.compile(r"[a-z]{4,10}")


def corpus_path(corpus: str) -> Path:
    """The JSON-lines file behind `corpus` (the embedded name or a local path)."""
    if corpus == EMBEDDED_CORPUS:
        return embedded_corpus_file()
    path = Path(corpus)
    if not path.is_file():
        raise FileNotFoundError(
            f"Haystack corpus {corpus!r} not found: give a JSON-lines file with a 'text' field."
        )
    return path


@lru_cache(maxsize=4)
def corpus_texts(corpus: str = EMBEDDED_CORPUS) -> tuple[str, ...]:
    """The non-empty `text` values of a JSON-lines corpus, in file order."""
    path = corpus_path(corpus)
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
            if row["text"].strip():
                texts.append(" ".join(row["text"].split()))
    if not texts:
        raise ValueError(f"{path}: no non-empty 'text' values.")
    return tuple(texts)


@lru_cache(maxsize=4)
def essay_words(corpus: str = EMBEDDED_CORPUS) -> tuple[str, ...]:
    """The whole corpus as one stream of whitespace-separated words."""
    return tuple(" ".join(corpus_texts(corpus)).split(" "))


@lru_cache(maxsize=4)
def vocabulary(corpus: str = EMBEDDED_CORPUS) -> tuple[str, ...]:
    """Sorted distinct lower-case alphabetic words (4-10 letters) of the corpus."""
    words = set()
    for text in corpus_texts(corpus):
        words.update(word for word in text.split() if _WORD.fullmatch(word))
    return tuple(sorted(words))


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
