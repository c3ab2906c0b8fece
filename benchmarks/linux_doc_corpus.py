"""Long real documents, offline: roots and a corpus made from Debian's `linux-doc` (the kernel's documentation).

The Linux kernel's reStructuredText documentation (GPL-2.0) is a packaged collection of long, coherent,
technical documents. This script turns it into the two local sources of `recipes/build/longdocs.yaml`:

- `roots.jsonl`: `--num_roots` English documents (translations left out) whose length in tokens of the build's
  LM falls in [`--min_tokens`, `--max_tokens`), stratified: the range is cut into `--length_bins` equal bins
  and the same number of documents is drawn (seeded) from each, so the build's statistics can be read as
  functions of root length. Each row: `id` (path under Documentation/), `text`, `num_tokens`.
- `passages.jsonl`: every other English document cut into passages of at most `--passage_chars` characters
  (whole lines grouped, as NExtLong's chunker does: `methods.nextlong.meta_chunks`), `--num_passages` of them
  drawn (seeded). No passage comes from a root document, so what the roots retrieve is other documents.
- `wiki.jsonl` (only with `--wiki_summaries N`): N of the embedded Wikipedia summaries, drawn (seeded), for a
  smaller corpus than the recipe's (which reads all 10,033 as `embedded:wiki-summaries`).

Get the documents (Debian/Ubuntu; no root needed for the second way):

    apt-get update && apt-get install -y linux-doc                          # /usr/share/doc/linux-doc-*/
    apt-get download linux-doc-6.1 && dpkg -x linux-doc-6.1_*.deb linux-doc  # or unpacked into ./linux-doc

    python benchmarks/linux_doc_corpus.py [--doc_dir DIR] --output_dir outputs/linux-doc

`--doc_dir` defaults to the first `/usr/share/doc/linux-doc-*/Documentation` (or `./linux-doc/usr/share/...`).
Prints the counts of what it wrote.
"""

from __future__ import annotations

import glob
import gzip
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser

from hf_entropylong.methods.nextlong import meta_chunks
from hf_entropylong.models import EMBEDDED_CORPUS, EMBEDDED_LM, load_tokenizer
from hf_entropylong.sources import load_text_source

DEFAULT_DOC_DIRS = (
    "/usr/share/doc/linux-doc-*/Documentation",
    "linux-doc/usr/share/doc/linux-doc-*/Documentation",
)


@dataclass
class CorpusArguments:
    output_dir: str = field(default="outputs/linux-doc", metadata={"help": "Where roots/passages.jsonl go."})
    doc_dir: str | None = field(default=None, metadata={"help": "linux-doc's Documentation/ folder."})
    tokenizer: str = field(default=EMBEDDED_LM, metadata={"help": "Tokenizer that measures root lengths."})
    num_roots: int = field(default=24, metadata={"help": "Roots to draw."})
    min_tokens: int = field(default=1000, metadata={"help": "Shortest root (tokens)."})
    max_tokens: int = field(default=7000, metadata={"help": "Roots are shorter than this (tokens)."})
    length_bins: int = field(
        default=6, metadata={"help": "Equal-width length bins, as many roots from each."}
    )
    passage_chars: int = field(default=2000, metadata={"help": "Longest corpus passage (characters)."})
    num_passages: int = field(default=5000, metadata={"help": "Corpus passages to draw."})
    wiki_summaries: int | None = field(default=None, metadata={"help": "Also write this many to wiki.jsonl."})
    seed: int = field(default=0, metadata={"help": "Seed of the draws."})


def find_doc_dir(doc_dir: str | None) -> Path:
    candidates = (
        [doc_dir] if doc_dir else [p for pattern in DEFAULT_DOC_DIRS for p in sorted(glob.glob(pattern))]
    )
    for candidate in candidates:
        if Path(candidate).is_dir():
            return Path(candidate)
    raise SystemExit(
        f"no linux-doc Documentation folder ({doc_dir or ' or '.join(DEFAULT_DOC_DIRS)}): run `apt-get install "
        "linux-doc`, or `apt-get download linux-doc-6.1 && dpkg -x linux-doc-6.1_*.deb linux-doc`, or pass --doc_dir."
    )


def read_documents(doc_dir: Path) -> dict[str, str]:
    """Every English .rst / .rst.gz document under `doc_dir` (each file once: symlinks are skipped), by path."""
    documents = {}
    for path in sorted(doc_dir.rglob("*.rst*")):
        relative = path.relative_to(doc_dir).as_posix()
        if (
            path.is_symlink()
            or relative.startswith("translations/")
            or not path.name.endswith((".rst", ".rst.gz"))
        ):
            continue
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        text = raw.decode("utf-8", errors="replace").strip()
        if text:
            documents[relative.removesuffix(".gz")] = text
    return documents


def draw_roots(lengths: dict[str, int], args: CorpusArguments, rng: random.Random) -> list[str]:
    """`num_roots` documents, as many from each equal-width length bin of [min_tokens, max_tokens)."""
    width = (args.max_tokens - args.min_tokens) / args.length_bins
    bins: list[list[str]] = [[] for _ in range(args.length_bins)]
    for name, length in sorted(lengths.items()):
        if args.min_tokens <= length < args.max_tokens:
            bins[int((length - args.min_tokens) // width)].append(name)
    per_bin, extra = divmod(args.num_roots, args.length_bins)
    roots = []
    for number, names in enumerate(bins):
        want = per_bin + (number < extra)
        if len(names) < want:
            raise SystemExit(
                f"only {len(names)} documents in length bin {number}; ask for fewer --num_roots."
            )
        roots += rng.sample(names, want)
    return roots


def main(args: CorpusArguments) -> None:
    doc_dir = find_doc_dir(args.doc_dir)
    documents = read_documents(doc_dir)
    tokenizer = load_tokenizer(args.tokenizer)
    lengths = {name: len(tokenizer(text)["input_ids"]) for name, text in documents.items()}
    rng = random.Random(args.seed)
    roots = draw_roots(lengths, args, rng)
    passages = [
        {"id": f"{name}#{number}", "text": documents[name][start:end].strip()}
        for name in sorted(set(documents) - set(roots))
        for number, (start, end) in enumerate(meta_chunks(documents[name], args.passage_chars))
        if documents[name][start:end].strip()
    ]
    passages = rng.sample(passages, min(args.num_passages, len(passages)))
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    with open(output / "roots.jsonl", "w") as file:
        for name in sorted(roots, key=lengths.get):
            file.write(json.dumps({"id": name, "text": documents[name], "num_tokens": lengths[name]}) + "\n")
    with open(output / "passages.jsonl", "w") as file:
        for passage in passages:
            file.write(json.dumps(passage) + "\n")
    if args.wiki_summaries:
        wiki, _ = load_text_source(EMBEDDED_CORPUS, role="corpus")
        wiki = wiki.shuffle(seed=args.seed).select(range(min(args.wiki_summaries, len(wiki))))
        wiki.select_columns(["id", "text"]).to_json(output / "wiki.jsonl", lines=True)
        print(f"{len(wiki)} Wikipedia summaries -> {output / 'wiki.jsonl'}")
    print(
        f"{len(documents)} documents in {doc_dir} ({sum(lengths.values()):,} tokens); {len(roots)} roots of "
        f"{min(lengths[r] for r in roots):,}-{max(lengths[r] for r in roots):,} tokens -> {output / 'roots.jsonl'}; "
        f"{len(passages)} passages of at most {args.passage_chars} characters -> {output / 'passages.jsonl'}"
    )


if __name__ == "__main__":
    (arguments,) = HfArgumentParser((CorpusArguments,)).parse_args_into_dataclasses()
    main(arguments)
