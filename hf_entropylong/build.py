"""The EntropyLong build: four stages chained by one linear `datasets.map` pipeline.

1. **entropy** — each root is scored by the LM; positions with H_t > μ + α·σ are where it lacks information.
   Each gets a query: the `window_words` words on each side of the token.
2. **retrieval** — queries are embedded and searched in a FAISS index over the corpus (top-k by cosine);
   the root itself and near-copies of it are excluded.
3. **verify** — each distinct candidate is prepended to the root once; it is kept where it cuts the entropy
   at a position it was retrieved for by ΔI ≥ ε.
4. **units** — verified contexts (shuffled, or in position order) are placed before the root; units are packed
   best-fit-decreasing into rows of exactly `max_seq_length` tokens.

Every stage runs over shards of roots with a cache file named by a fingerprint of its inputs and settings, so a
killed build restarted with the same config reuses every finished shard and gives the same result. Each root's
row keeps a `status` saying where and why it stopped; the counts on the dataset card are computed from them.
"""

from __future__ import annotations

import functools
import math
import random
import time
from pathlib import Path

import datasets
import numpy as np
from datasets.fingerprint import Hasher

from . import models
from .config import STAGE_FEATURES, BuildConfig
from .entropy import batch_document_entropy, high_entropy_positions
from .pack import UnitTooLongError, encode_document, make_unit, pack_units
from .publish import print_summary, push_folder, summarize, write_dataset
from .retrieval import build_corpus_index, embed_texts, is_near_duplicate, load_index, query_window, search
from .sources import load_text_source
from .verify import context_entropy, delta_i


# Models are loaded once per process and device, lazily: a stage whose shards are all cached loads nothing.
@functools.cache
def _tokenizer(name: str):
    return models.load_tokenizer(name)


@functools.cache
def _lm(name: str, dtype: str, device: str | None, attn_implementation: str | None, trust_remote_code: bool):
    return models.load_causal_lm(
        name,
        dtype=dtype,
        device=device,
        attn_implementation=attn_implementation,
        trust_remote_code=trust_remote_code,
    )


@functools.cache
def _embedder(name: str, device: str | None, max_seq_length: int | None, trust_remote_code: bool):
    embedder = models.load_embedder(name, device=device, trust_remote_code=trust_remote_code)
    if max_seq_length:
        embedder.max_seq_length = max_seq_length
    return embedder


@functools.cache
def _index(path: str, use_gpu: bool):
    return load_index(path, use_gpu)


def _device(rank: int | None) -> str | None:
    import torch

    if rank is None or not torch.cuda.is_available():
        return None
    return f"cuda:{rank % torch.cuda.device_count()}"


def _load_lm(config: BuildConfig, rank: int | None):
    return _lm(
        config.lm, config.lm_dtype, _device(rank), config.attn_implementation, config.trust_remote_code
    )


def lm_window(config: BuildConfig, lm) -> int:
    return config.lm_max_length or lm.config.max_position_embeddings


# Stage 1: entropy and query windows.
def entropy_stage(batch: dict, rank: int | None, config: BuildConfig) -> dict:
    tokenizer = _tokenizer(config.lm)
    lm = _load_lm(config, rank)
    encodings = tokenizer(batch["text"], return_offsets_mapping=True)
    documents = [ids + [tokenizer.eos_token_id] for ids in encodings["input_ids"]]
    fits = [len(ids) <= config.max_seq_length for ids in documents]
    scored = iter(
        batch_document_entropy(
            lm,
            [ids for ids, ok in zip(documents, fits, strict=True) if ok],
            batch_size=config.entropy_batch_size,
            max_length=lm_window(config, lm),
            chunk_size=config.logits_chunk_size,
        )
    )
    out = {"num_tokens": [], "entropy_mean": [], "entropy_std": [], "positions": [], "status": []}
    for text, ids, offsets, ok in zip(
        batch["text"], documents, encodings["offset_mapping"], fits, strict=True
    ):
        out["num_tokens"].append(len(ids))
        if not ok:
            out["entropy_mean"].append(None)
            out["entropy_std"].append(None)
            out["positions"].append([])
            out["status"].append("root_too_long")
            continue
        entropy = next(scored).astype(np.float64)
        # Only text tokens count: special tokens (BOS, the closing EOS) have empty character spans. The first
        # `min_left_context` text tokens are left out too: any context "explains" a document's opening.
        spans = list(offsets) + [(0, 0)]
        special = np.array([start >= end for start, end in spans])
        entropy[special] = np.nan
        entropy[np.flatnonzero(~special)[: config.min_left_context]] = np.nan
        picked = high_entropy_positions(entropy, alpha=config.alpha)
        if config.max_positions_per_root is not None:
            picked = sorted(picked, key=lambda t: -entropy[t])[: config.max_positions_per_root]
        positions = []
        for t in sorted(int(t) for t in picked):
            start, end = spans[t]
            positions.append(
                {
                    "token_index": t,
                    "char_start": int(start),
                    "char_end": int(end),
                    "token": text[start:end],
                    "entropy": float(entropy[t]),
                    "query": query_window(text, start, end, config.window_words),
                }
            )
        out["entropy_mean"].append(float(np.nanmean(entropy)) if np.isfinite(entropy).any() else None)
        out["entropy_std"].append(float(np.nanstd(entropy)) if np.isfinite(entropy).any() else None)
        out["positions"].append(positions)
        out["status"].append("ok" if positions else "no_high_entropy_position")
    return out


# Stage 2: dense retrieval with the root and its near-copies excluded.
def retrieval_stage(
    batch: dict,
    rank: int | None,
    config: BuildConfig,
    corpus: datasets.Dataset,
    index_path: str,
    same_source: bool,
) -> dict:
    queries = [position["query"] for positions in batch["positions"] for position in positions]
    out = {
        "retrieved": [],
        "num_excluded_self": [],
        "num_excluded_near_duplicate": [],
        "status": list(batch["status"]),
    }
    scores_per_query = hits_per_query = np.empty((0, 0))
    if queries:
        embedder = _embedder(
            config.embedder, _device(rank), config.embedder_max_seq_length, config.trust_remote_code
        )
        vectors = embed_texts(
            embedder, queries, batch_size=config.embed_batch_size, prompt_name=config.query_prompt_name
        )
        # Extra hits absorb the exclusions below.
        scores_per_query, hits_per_query = search(
            _index(index_path, config.index_on_gpu), vectors, 2 * config.top_k + 2, nprobe=config.nprobe
        )
        unique = sorted({int(i) for i in hits_per_query.ravel() if i >= 0})
        rows = corpus[unique] if unique else {"id": [], "text": []}
        corpus_rows = {i: (rows["id"][j], rows["text"][j]) for j, i in enumerate(unique)}
    query_index = 0
    for row, (root_id, text, positions) in enumerate(
        zip(batch["id"], batch["text"], batch["positions"], strict=True)
    ):
        retrieved, excluded_self, excluded_copy = [], 0, 0
        for position in positions:
            kept = 0
            for score, hit in zip(scores_per_query[query_index], hits_per_query[query_index], strict=True):
                if hit < 0 or kept == config.top_k:
                    continue
                corpus_id, corpus_text = corpus_rows[int(hit)]
                if same_source and corpus_id == root_id:
                    excluded_self += 1
                elif is_near_duplicate(text, corpus_text, threshold=config.near_duplicate_threshold):
                    excluded_copy += 1
                else:
                    kept += 1
                    retrieved.append(
                        {
                            "token_index": position["token_index"],
                            "corpus_index": int(hit),
                            "corpus_id": corpus_id,
                            "similarity": float(score),
                        }
                    )
            query_index += 1
        out["retrieved"].append(retrieved)
        out["num_excluded_self"].append(excluded_self)
        out["num_excluded_near_duplicate"].append(excluded_copy)
        if out["status"][row] == "ok" and not retrieved:
            out["status"][row] = "no_candidate"
    return out


# Stage 3: verification, each distinct candidate once per root.
def verify_stage(batch: dict, rank: int | None, config: BuildConfig, corpus: datasets.Dataset) -> dict:
    tokenizer = _tokenizer(config.lm)
    out = {"candidates": [], "verified_contexts": [], "status": list(batch["status"])}
    for row, (text, positions, retrieved) in enumerate(
        zip(batch["text"], batch["positions"], batch["retrieved"], strict=True)
    ):
        if not retrieved:
            out["candidates"].append([])
            out["verified_contexts"].append([])
            continue
        lm = _load_lm(config, rank)
        root_ids = encode_document(tokenizer, text)
        baseline = {position["token_index"]: position["entropy"] for position in positions}
        by_candidate: dict[int, list[dict]] = {}
        for hit in retrieved:
            by_candidate.setdefault(hit["corpus_index"], []).append(hit)
        order = list(by_candidate)
        contexts = [encode_document(tokenizer, passage) for passage in corpus[order]["text"]]
        entropies = context_entropy(
            lm,
            contexts,
            root_ids,
            [[hit["token_index"] for hit in by_candidate[i]] for i in order],
            batch_size=config.verify_batch_size,
            max_length=lm_window(config, lm),
        )
        candidates, verified = [], []
        for corpus_index, with_context in zip(order, entropies, strict=True):
            hits = by_candidate[corpus_index]
            gains = delta_i(
                np.array([baseline[hit["token_index"]] for hit in hits]), np.asarray(with_context)
            )
            for hit, entropy, gain in zip(hits, with_context, gains, strict=True):
                candidates.append(
                    {
                        **hit,
                        "entropy_with_context": float(entropy),
                        "delta_i": float(gain),
                        "verified": bool(gain >= config.epsilon),
                    }
                )
            passed = [
                hit["token_index"] for hit, gain in zip(hits, gains, strict=True) if gain >= config.epsilon
            ]
            if passed:
                verified.append(
                    {
                        "corpus_index": corpus_index,
                        "corpus_id": hits[0]["corpus_id"],
                        "delta_i": float(max(gains)),
                        "token_indices": passed,
                    }
                )
        verified.sort(key=lambda context: min(context["token_indices"]))
        out["candidates"].append(candidates)
        out["verified_contexts"].append(verified)
        if not verified:
            out["status"][row] = "no_verified_context"
    return out


# Stage 4a: one training unit per root with verified contexts.
def unit_stage(batch: dict, config: BuildConfig, corpus: datasets.Dataset) -> dict:
    tokenizer = _tokenizer(config.lm)
    out = {"unit_input_ids": [], "unit_context_ids": [], "num_contexts_trimmed": []}
    for root_id, text, verified in zip(batch["id"], batch["text"], batch["verified_contexts"], strict=True):
        if not verified:
            out["unit_input_ids"].append([])
            out["unit_context_ids"].append([])
            out["num_contexts_trimmed"].append(0)
            continue
        contexts = [
            encode_document(tokenizer, passage)
            for passage in corpus[[c["corpus_index"] for c in verified]]["text"]
        ]
        rng = random.Random(f"{config.seed}/{root_id}")  # per root, so a resumed build shuffles identically
        try:
            unit, kept = make_unit(
                encode_document(tokenizer, text),
                contexts,
                [c["delta_i"] for c in verified],
                order=config.order,
                rng=rng,
                max_length=config.max_seq_length,
            )
        except UnitTooLongError:
            unit, kept = [], []
        out["unit_input_ids"].append(unit)
        out["unit_context_ids"].append([verified[i]["corpus_id"] for i in kept])
        out["num_contexts_trimmed"].append(len(verified) - len(kept))
    return out


def _fingerprint(*parts) -> str:
    return Hasher.hash(parts)[:16]


def map_in_shards(
    dataset: datasets.Dataset,
    function,
    stage: str,
    fingerprint: str,
    config: BuildConfig,
    fn_kwargs: dict,
    batch_size: int,
    with_rank: bool = True,
) -> datasets.Dataset:
    """`dataset.map(function)` shard by shard, each shard cached under `<output_dir>/.cache/<stage>-<fp>-<i>.arrow`."""
    cache = Path(config.output_dir).resolve() / ".cache"
    cache.mkdir(parents=True, exist_ok=True)
    features = datasets.Features({**dataset.features, **STAGE_FEATURES[stage]})
    num_shards = max(1, math.ceil(len(dataset) / config.shard_size))
    done = []
    for shard_index in range(num_shards):
        shard = dataset.select(
            range(shard_index * config.shard_size, min(len(dataset), (shard_index + 1) * config.shard_size))
        )
        done.append(
            shard.map(
                function,
                batched=True,
                batch_size=batch_size,
                with_rank=with_rank,
                num_proc=config.num_proc if with_rank and config.num_proc and config.num_proc > 1 else None,
                fn_kwargs=fn_kwargs,
                features=features,
                cache_file_name=str(
                    cache / f"{stage}-{fingerprint}-{shard_index:05d}-of-{num_shards:05d}.arrow"
                ),
                new_fingerprint=f"{fingerprint}-{shard_index}",
                desc=f"{stage} [{shard_index + 1}/{num_shards}]",
            )
        )
    return datasets.concatenate_datasets(done)


def _stage_settings(config: BuildConfig, *names: str) -> dict:
    return {name: getattr(config, name) for name in names}


def build(config: BuildConfig) -> dict:
    """Run the whole build into `config.output_dir` and return the counts written to the dataset card."""
    output_dir = Path(config.output_dir).resolve()
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    roots, root_counts = load_text_source(
        config.roots, config.roots_split, config.roots_text_column, config.roots_id_column, role="roots"
    )
    if config.num_roots is not None and config.num_roots < len(roots):
        roots = roots.shuffle(seed=config.seed).select(range(config.num_roots))
    corpus_parts = [
        load_text_source(
            source, config.corpus_split, config.corpus_text_column, config.corpus_id_column, role="corpus"
        )
        for source in config.corpus
    ]
    corpus = datasets.concatenate_datasets([part for part, _ in corpus_parts])
    if len(roots) == 0:
        raise ValueError(
            f"roots {config.roots!r}: no non-empty document to build from ({root_counts.empty} empty)."
        )
    if len(corpus) == 0:
        raise ValueError(f"corpus {config.corpus}: no non-empty document to retrieve from.")
    timings["load"] = time.perf_counter() - clock

    clock = time.perf_counter()
    lm_settings = _stage_settings(
        config, "lm", "lm_dtype", "lm_max_length", "logits_chunk_size", "max_seq_length"
    )
    entropy_fp = _fingerprint(
        "entropy",
        roots._fingerprint,
        lm_settings,
        config.alpha,
        config.min_left_context,
        config.max_positions_per_root,
        config.window_words,
    )
    scored = map_in_shards(
        roots, entropy_stage, "entropy", entropy_fp, config, {"config": config}, config.shard_size
    )
    timings["entropy"] = time.perf_counter() - clock

    clock = time.perf_counter()
    index_settings = _stage_settings(
        config, "embedder", "embedder_max_seq_length", "document_prompt_name", "index_factory"
    )
    index_path = output_dir / ".cache" / f"index-{_fingerprint(corpus._fingerprint, index_settings)}.faiss"
    embedder = _embedder(
        config.embedder, _device(0), config.embedder_max_seq_length, config.trust_remote_code
    )
    build_corpus_index(
        corpus,
        embedder,
        index_path=index_path,
        index_factory=config.index_factory,
        batch_size=config.embed_batch_size,
        prompt_name=config.document_prompt_name,
        use_gpu=config.index_on_gpu,
        shard_size=config.index_shard_size,
        train_size=config.index_train_size,
        seed=config.seed,
    )
    retrieval_fp = _fingerprint(
        "retrieval",
        entropy_fp,
        index_path.name,
        config.query_prompt_name,
        config.top_k,
        config.nprobe,
        config.near_duplicate_threshold,
    )
    same_source = config.corpus == [config.roots]
    retrieved = map_in_shards(
        scored,
        retrieval_stage,
        "retrieval",
        retrieval_fp,
        config,
        {"config": config, "corpus": corpus, "index_path": str(index_path), "same_source": same_source},
        config.shard_size,
    )
    timings["retrieval"] = time.perf_counter() - clock

    clock = time.perf_counter()
    verify_fp = _fingerprint("verify", retrieval_fp, config.epsilon, config.verify_batch_size)
    verified = map_in_shards(
        retrieved, verify_stage, "verify", verify_fp, config, {"config": config, "corpus": corpus}, 8
    )
    timings["verify"] = time.perf_counter() - clock

    clock = time.perf_counter()
    units_fp = _fingerprint("units", verify_fp, config.order, config.seed, config.max_seq_length)
    with_units = map_in_shards(
        verified,
        unit_stage,
        "units",
        units_fp,
        config,
        {"config": config, "corpus": corpus},
        64,
        with_rank=False,
    )
    units = with_units.filter(lambda batch: [len(ids) > 0 for ids in batch["unit_input_ids"]], batched=True)
    units = units.select_columns(["unit_input_ids", "id", "unit_context_ids"]).rename_columns(
        {"unit_input_ids": "input_ids", "id": "root_id", "unit_context_ids": "context_ids"}
    )
    tokenizer = _tokenizer(config.lm)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    packed = pack_units(units, config.max_seq_length, pad_id, seed=config.seed) if len(units) else None
    units_left_over = 0
    if packed is not None:
        # Best-fit-decreasing leaves its last rows mostly padding: hold them back (their units stay audited).
        most_padding = int((1 - config.min_row_fill) * config.max_seq_length)
        filled = packed.filter(
            lambda batch: [n <= most_padding for n in batch["num_padding_tokens"]],
            batched=True,
            desc="Row fill",
        )
        units_left_over = len(units) - sum(map(len, filled["root_ids"]))
        packed = filled.flatten_indices() if len(filled) else None
    if packed is not None:
        packed = packed.map(
            lambda batch: {"text": tokenizer.batch_decode(batch["input_ids"])},
            batched=True,
            desc="Decoding rows",
        )
    timings["pack"] = time.perf_counter() - clock

    dependencies = with_units.remove_columns(["unit_input_ids", "retrieved"]).rename_columns(
        {"id": "root_id", "text": "root_text"}
    )
    counts = summarize(root_counts, [c for _, c in corpus_parts], dependencies, packed)
    counts["units_left_over"] = units_left_over
    counts["seconds"] = {stage: round(seconds, 1) for stage, seconds in timings.items()}
    write_dataset(output_dir, packed, dependencies, counts, config)
    if config.push_to_hub:
        push_folder(output_dir, config)
    return counts


def main(argv: list[str] | None = None) -> dict:
    from trl import TrlParser

    (config,) = TrlParser((BuildConfig,)).parse_args_and_config(args=argv)
    counts = build(config)
    print_summary(counts, config.output_dir)
    return counts


if __name__ == "__main__":
    main()
