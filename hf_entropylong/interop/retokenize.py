"""`hf-entropylong retokenize SRC OUT --tokenizer NAME --max_seq_length N`: a build for another model's tokenizer.

    hf-entropylong retokenize outputs/demo outputs/demo-qwen --tokenizer Qwen/Qwen2.5-7B --max_seq_length 32768

The verified dependencies of a build do not depend on the tokenizer of the model that will train on them: what was
verified is that a context lowers the LM's entropy at some characters of the root. This command keeps every unit
and dependency of the published build `SRC` and writes them for another tokenizer, re-packed to another length,
without running any model:

1. Texts. Each root's text is in the `dependencies` table. The contexts' texts are in the packed rows only, as
   tokens: each unit is cut at its `unit_context_lengths` and each context decoded with the build's tokenizer
   (`--source_tokenizer`, by default the build's `lm`), special tokens left out. A root whose decoded tokens do not
   give back its text exactly (a tokenizer whose decoding is not exact) is counted on the card.
2. Units. Each text is encoded with the new tokenizer as a build encodes a document (`models.encode_documents`:
   BOS when it adds one, EOS at the end), and the unit is rebuilt in the build's order, [contexts; root]
   (`stages.units.make_unit`): a unit longer than N drops its lowest-ΔI contexts, as a build does, and a root
   longer than N on its own gets the status `root_too_long`.
3. Positions. A high-entropy position is a span of characters of its root (`char_start`, `char_end`). Its new
   `token_index` is the new token that holds the span's first non-space character (a tokenizer may split the space
   off), so each recorded position still points at the characters the LM was uncertain about; `char_start`,
   `char_end` and `token` keep those characters. Candidates' and contexts' token indices follow their positions,
   and `dependency_distances` are recounted in the new tokens.
4. Rows. The units are packed into rows of exactly N tokens (`publish.packing.pack_sequences`, the build's
   `min_row_fill` and `seed` unless given) and decoded with the new tokenizer.

What is kept as it was: the entropies, ΔI and similarities (the build's LM measured them on its own tokens; the
per-root `entropy_histogram` counts those tokens), and `build_config.yaml`'s settings, with `tokenizer`,
`max_seq_length` and the source added. A unit the build held back in an under-filled row has no published
context tokens: its root keeps its dependencies with the status `unit_not_published`. A context the build
already trimmed for length is gone. Full-row baselines (concat, Quest, NExtLong) cut their rows to length and are
refused: rebuild them instead. The card shows the counts before and after.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import datasets
import numpy as np
from huggingface_hub import DatasetCard

from ..models import encode_documents, load_tokenizer
from ..publish.counts import BuildCounts, format_value
from ..publish.packing import PackSettings, pack_sequences
from ..sources import SourceCounts
from ..stages.units import UnitTooLongError, dependency_distances, make_unit
from .folders import (
    DEPENDENCY_FEATURES,
    load_dependencies,
    load_packed,
    read_published,
    staged_folder,
    write_published,
)

UNIT_METHODS = ("entropylong", "noverify")  # methods whose units are whole [contexts; root] spans
NOT_PUBLISHED = "unit_not_published"


def token_at(starts: np.ndarray, ends: np.ndarray, text: str, char_start: int, char_end: int) -> int:
    """The token (of a root encoded with offsets `starts`/`ends`) that holds the first non-space character of
    `text[char_start:char_end]` (`char_start` when the span is blank); the next token when none holds it."""
    piece = text[char_start:char_end]
    anchor = char_start + len(piece) - len(piece.lstrip()) if piece.strip() else char_start
    real = np.flatnonzero(ends > starts)  # special tokens have empty spans
    at = int(np.searchsorted(starts[real], anchor, side="right")) - 1
    if at >= 0 and ends[real[at]] > anchor:
        return int(real[at])
    return int(real[min(at + 1, len(real) - 1)])


def unit_tokens(packed: datasets.Dataset) -> dict[str, tuple[int, int, int]]:
    """Where each root's unit is in the packed rows: root id -> (row, start, length)."""
    where = {}
    for row, (spans, roots) in enumerate(zip(packed["seq_lengths"], packed["root_ids"], strict=True)):
        starts = np.cumsum([0, *spans[:-1]])
        for root, start, length in zip(roots, starts, spans, strict=False):  # the padding tail has no root
            where[root] = (row, int(start), int(length))
    return where


def retokenize_roots(batch: dict, packed, where: dict, old, new, max_length: int, counts: dict) -> dict:
    """One batch of the per-root table, re-tokenized (see the module docstring), with each unit's new ids."""
    encoded = encode_documents(new, batch["root_text"])
    out = {name: list(batch[name]) for name in batch}
    out["id"], out["unit_input_ids"] = list(batch["root_id"]), []
    for i, (root_id, text) in enumerate(zip(batch["root_id"], batch["root_text"], strict=True)):
        starts, ends = (np.array(side, dtype=np.int64) for side in zip(*encoded.offsets[i], strict=True))
        moved = {
            p["token_index"]: token_at(starts, ends, text, p["char_start"], p["char_end"])
            for p in batch["positions"][i]
        }
        out["positions"][i] = [{**p, "token_index": moved[p["token_index"]]} for p in batch["positions"][i]]
        out["candidates"][i] = [
            {**c, "token_index": moved.get(c["token_index"], c["token_index"])}
            for c in batch["candidates"][i]
        ]
        contexts = [
            {**c, "token_indices": [moved.get(t, t) for t in c["token_indices"]]}
            for c in batch["contexts"][i]
        ]
        out["contexts"][i] = contexts
        out["num_tokens"][i] = len(encoded.ids[i])
        unit, kept_ids, lengths, distances = [], [], [], []
        if batch["status"][i] == "ok" and root_id not in where:
            out["status"][i] = NOT_PUBLISHED
        elif batch["status"][i] == "ok":
            row, start, length = where[root_id]
            tokens = packed[row]["input_ids"][start : start + length].tolist()
            bounds = np.cumsum([0, *batch["unit_context_lengths"][i]])
            texts = old.batch_decode(
                [tokens[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)], skip_special_tokens=True
            )
            counts["roots_decoded_differently"] += (
                old.decode(tokens[bounds[-1] :], skip_special_tokens=True) != text
            )
            by_id = {c["corpus_id"]: c for c in contexts}
            placed = [by_id[cid] for cid in batch["unit_context_ids"][i]]
            scores = [c["delta_i"] if np.isfinite(c["delta_i"]) else 0.0 for c in placed]
            try:
                context_ids = encode_documents(new, texts).ids if texts else []
                unit, kept = make_unit(
                    encoded.ids[i], context_ids, scores, order="sequence", max_length=max_length
                )
                kept_ids = [placed[k]["corpus_id"] for k in kept]
                lengths = [len(context_ids[k]) for k in kept]
                distances = dependency_distances(lengths, [placed[k]["token_indices"] for k in kept])
                out["num_contexts_trimmed"][i] += len(placed) - len(kept)
                counts["contexts_trimmed_for_length"] += len(placed) - len(kept)
            except UnitTooLongError:
                out["status"][i] = "root_too_long"
                counts["roots_too_long"] += 1
        out["unit_input_ids"].append(unit)
        out["unit_context_ids"][i], out["unit_context_lengths"][i] = kept_ids, lengths
        out["num_unit_tokens"][i], out["dependency_distances"][i] = len(unit), distances
    return out


def placed_counts(dependencies: datasets.Dataset) -> tuple[int, int]:
    """(contexts placed in units, (context, position) dependencies they serve), over the roots with a unit."""
    columns = dependencies.select_columns(["num_unit_tokens", "unit_context_ids", "dependency_distances"])
    contexts = dependencies_served = 0
    for batch in columns.iter(batch_size=1_000):
        for tokens, ids, distances in zip(*batch.values(), strict=True):
            if tokens:
                contexts += len(ids)
                dependencies_served += len(distances)
    return contexts, dependencies_served


def retokenize(
    source: Path,
    out: Path,
    tokenizer_name: str,
    max_seq_length: int,
    source_tokenizer: str | None = None,
    min_row_fill: float | None = None,
    seed: int | None = None,
) -> tuple[BuildCounts, dict]:
    """Write the build published in `source` re-tokenized with `tokenizer_name` into rows of `max_seq_length` tokens
    in the new folder `out` (see the module docstring). Returns the new counts and the command's own."""
    source, out = Path(source), Path(out)
    stats, config = read_published(source)
    method = stats.get("method") or config.get("method") or "entropylong"
    if method not in UNIT_METHODS:
        hint = (
            "import its source again with the new --tokenizer (a text source is tokenized by import)"
            if method == "imported"
            else "its rows are cut to length: rebuild it (hf-entropylong build --config build_config.yaml --lm "
            "NAME --max_seq_length N)"
        )
        raise ValueError(f"{source} holds {method} rows, not EntropyLong units [contexts; root]: {hint}.")
    old_name = source_tokenizer or config.get("tokenizer") or config["lm"]
    old, new = load_tokenizer(old_name), load_tokenizer(tokenizer_name)
    if new.eos_token_id is None:
        raise ValueError(f"tokenizer {tokenizer_name} has no EOS token, which ends every document of a unit.")
    settings = PackSettings(
        max_seq_length=max_seq_length,
        min_row_fill=config.get("min_row_fill", 0.5) if min_row_fill is None else min_row_fill,
    )
    seed = config.get("seed", 0) if seed is None else seed
    packed = load_packed(str(source)).with_format("numpy", columns=["input_ids"], output_all_columns=True)
    dependencies = load_dependencies(source)
    where = unit_tokens(packed)
    counts = dict.fromkeys(("roots_decoded_differently", "contexts_trimmed_for_length", "roots_too_long"), 0)
    with staged_folder(out) as staging:
        work = staging / ".work"  # the re-tokenized tables' Arrow files, removed before the folder is renamed
        work.mkdir()
        rows = dependencies.map(
            retokenize_roots,
            batched=True,
            batch_size=64,
            fn_kwargs={"packed": packed, "where": where, "old": old, "new": new, "max_length": max_seq_length,
                       "counts": counts},
            features=datasets.Features({**DEPENDENCY_FEATURES, "id": datasets.Value("string"),
                                        "unit_input_ids": datasets.List(datasets.Value("int64"))}),
            cache_file_name=str(work / "roots.arrow"),
            desc="Re-tokenizing",
        )  # fmt: skip
        new_packed, left_over = pack_sequences(rows, settings, new, seed)
        if new_packed is None:
            raise ValueError(f"{source}: no row of {max_seq_length} tokens could be packed from its units.")
        new_dependencies = rows.select_columns(list(DEPENDENCY_FEATURES))
        statuses = (*stats.get("roots_by_status", {}), NOT_PUBLISHED)
        build_counts = BuildCounts.from_tables(
            method, tuple(dict.fromkeys(statuses)),
            SourceCounts(stats["roots_read"], stats["roots"], stats["roots_empty"], str(source)),
            [SourceCounts(stats["corpus_documents"] + stats["corpus_empty"], stats["corpus_documents"], stats["corpus_empty"], "")],
            new_dependencies, new_packed, left_over,
        )  # fmt: skip
        before, after = placed_counts(dependencies), placed_counts(new_dependencies)
        counts.update(
            units_not_published=build_counts.roots_by_status.get(NOT_PUBLISHED, 0),
            contexts_placed_before=before[0], contexts_placed_after=after[0],
            dependencies_placed_before=before[1], dependencies_placed_after=after[1],
        )  # fmt: skip
        new_settings = {**config, "max_seq_length": max_seq_length, "min_row_fill": settings.min_row_fill,
                        "seed": seed, "tokenizer": tokenizer_name, "retokenized_from": str(source),
                        "source_tokenizer": old_name}  # fmt: skip
        compared = [
            ("tokenizer", old_name, tokenizer_name),
            ("max_seq_length", config.get("max_seq_length"), max_seq_length),
            *((label, stats.get(key), getattr(build_counts, key)) for key, label in (
                ("sequences", "sequences"), ("units", "units in sequences"), ("tokens", "tokens"),
                ("padding_tokens", "padding tokens"), ("high_entropy_positions", "high-entropy positions"),
                ("mean_dependency_distance", "mean dependency distance (tokens)"))),
            ("contexts placed in units", *(n for n, _ in (before, after))),
            ("dependencies placed in units (context, position)", *(n for _, n in (before, after))),
        ]  # fmt: skip
        card = {
            "title": f"{Path(source).resolve().name} re-tokenized for {tokenizer_name}",
            "what": f"The {method} build `{source}` re-tokenized by `hf-entropylong retokenize` for the tokenizer "
            f"`{tokenizer_name}` and re-packed into rows of {max_seq_length:,} tokens: the same units and "
            "verified dependencies, every high-entropy position mapped to the new token that holds its characters "
            "(`hf_entropylong/interop/retokenize.py`). Entropies, ΔI and similarities are the build's, measured "
            f"with `{config.get('lm')}` on its own tokens.",
            "before_after": [(label, format_value(a), format_value(b)) for label, a, b in compared],
            "rows": [(name.replace("_", " "), f"{n:,}") for name, n in counts.items() if "_placed_" not in name],
            "tokenizer": tokenizer_name,
            "license": _license(source),
        }  # fmt: skip
        write_published(staging, new_packed, new_dependencies, build_counts, counts, new_settings, card)
        shutil.rmtree(work)
    return build_counts, counts


def _license(folder: Path) -> str | None:
    card = folder / "README.md"
    return DatasetCard.load(card).data.license if card.is_file() else None


def main(argv: list[str] | None = None) -> tuple[BuildCounts, dict]:
    parser = argparse.ArgumentParser(
        prog="hf-entropylong retokenize",
        description="Re-tokenize a published EntropyLong build for another tokenizer and re-pack it, keeping every "
        "unit and dependency (positions mapped through the new tokenizer), without running a model.",
    )
    parser.add_argument("source", metavar="SRC", help="A published build folder.")
    parser.add_argument("out", metavar="OUT", help="A new or empty folder.")
    parser.add_argument("--tokenizer", required=True, help="The new tokenizer (Hub id or path).")
    parser.add_argument("--max_seq_length", type=int, required=True, help="Tokens per packed row.")
    parser.add_argument("--source_tokenizer", help="The build's tokenizer (default: its lm).")
    parser.add_argument(
        "--min_row_fill", type=float, help="Hold back rows filled less (default: the build's)."
    )
    parser.add_argument("--seed", type=int, help="Seed of the rows' shuffle (default: the build's).")
    args = parser.parse_args(argv)
    counts, own = retokenize(
        Path(args.source), Path(args.out), args.tokenizer, args.max_seq_length, args.source_tokenizer,
        args.min_row_fill, args.seed,
    )  # fmt: skip
    print(
        f"Re-tokenized {counts.units:,} units into {counts.sequences:,} rows of {args.max_seq_length:,} tokens "
        f"({counts.padding_tokens:,} padding) in {args.out}: {own['dependencies_placed_after']:,} of "
        f"{own['dependencies_placed_before']:,} placed dependencies kept, {own['contexts_trimmed_for_length']:,} "
        f"contexts trimmed for length, {own['units_not_published']:,} units not in the source's rows.",
        file=sys.stderr,
    )
    return counts, own


if __name__ == "__main__":
    from hf_entropylong import cli

    cli.run(main)
