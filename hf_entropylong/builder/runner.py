"""The EntropyLong build: stage records run in order by one sharded, resumable `datasets.map` pipeline.

1. **entropy** (`stages/entropy.py`) — each root is scored by the LM; positions with H_t > μ + α·σ are where it lacks
   information. Each gets a query: the `window_words` words on each side of the token.
2. **retrieval** (`stages/retrieval.py`) — queries are embedded and searched in a FAISS index over the corpus (top-k by
   cosine); the root itself and near-copies of it are excluded.
3. **verify** (`stages/verify.py`) — each distinct candidate is prepended to the root once; it is kept where it cuts the
   entropy at a position it was retrieved for by ΔI ≥ ε.
4. **units** (`stages/units.py`) — verified contexts (shuffled, or in position order) are placed before the root.

Then, once: the units are packed best-fit-decreasing into rows of exactly `max_seq_length` tokens, counted, and
published with the dataset card (`publish/`).

Those are EntropyLong's stages; `method` swaps in the paper's NoVerify ablation or a baseline (concat, quest,
nextlong: `methods/`), whose stages write the same columns, so every method publishes one schema (`conform`).

Each stage is a `Stage` record (`stages/__init__.py`) that owns its settings dataclass, the inputs it reads, the columns it
adds and the statuses it may set; this module only runs the records. `BuildConfig` is the flat union of every
settings dataclass (`builder/config.py`), so a recipe is one flat YAML. Every stage runs over shards of `shard_size` roots, each cached
in `<cache_dir>/<stage>-<key>-<shard>.arrow` (default `<output_dir>/.cache/`), where a stage's key is the hash of
the previous stage's key, its own output-relevant settings, the identities of its inputs (`builder/inputs.py`) and
its columns: builds sharing a `cache_dir` share the stages they have in common, and a killed build restarted
with the same config reuses every finished shard, and a changed setting reruns exactly the stages it reaches.
Each root's row keeps a `status` saying where and why it stopped; the counts on the card are computed from them.
A shard cache (and the index) is read back only once it matches the checksum recorded beside it when it was written
(`files.cached_map`); a damaged one is named, set aside and computed again. Settings are checked before any work:
each group's values when the config is made, root ids once the roots are read, and the index factory by FAISS, with
the embedder's dimension, before the corpus is embedded.

Scale-out is the launcher's (`accelerate launch`, `torchrun`): rank r takes the root and corpus shards whose index
is r modulo the number of ranks; what must happen once (training the index, packing, publishing) runs on the main
process after a barrier. Caches are named by shard, never by rank, so any number of ranks resumes any build.
With `index_on_gpu` the main process plans where the index goes (`index/gpu_placement.py`) and every rank follows:
a copy on each rank's GPU; or, when only the node's GPUs together hold it, sharded over them by the node's main
process, which then runs the stages that read the index for every root shard of its node.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import datasets
import torch

from ..files import cache_is_sound, cached_map, write_text
from ..index.gpu_placement import this_node
from ..methods import stages_of
from ..publish.counts import BuildCounts, method_label, print_summary
from ..publish.packing import PackSettings, pack_sequences
from ..publish.writer import OutputSettings, claim_output_dir, lock_output_dir, publish, push_folder
from ..settings import settings_of
from ..sources import SourceCounts, check_unique_ids, load_text_source
from ..stages import InputView, Stage
from ..stages.entropy import ENTROPY_STAGE
from ..stages.retrieval import RETRIEVAL_STAGE
from ..stages.units import UNIT_STAGE
from ..stages.verify import VERIFY_STAGE
from .config import BuildConfig
from .inputs import INDEXES, BuildInputs, stage_keys

logger = logging.getLogger(__name__)

COLUMNS = {
    name: feature
    for stage in (ENTROPY_STAGE, RETRIEVAL_STAGE, VERIFY_STAGE, UNIT_STAGE)
    for name, feature in stage.columns.items()
}
"""The per-root columns of every method's table: EntropyLong's (what a method does not compute is left empty)."""


def statuses_of(stages: tuple[Stage, ...]) -> tuple[str, ...]:
    """Every status a root can end with in a build running `stages`, in stage order."""
    return tuple(dict.fromkeys(("ok", *(reason for stage in stages for reason in stage.drop_reasons))))


def _apply(batch: dict, stage: Stage, settings, inputs: BuildInputs) -> dict:
    """One map call of `stage`, with only its declared inputs visible, and the statuses it set checked."""
    try:
        out = stage.function(batch, settings, InputView(inputs, stage.inputs, stage.name))
    except torch.OutOfMemoryError as error:
        lower = f"lower --{stage.batch_size_setting}" if stage.batch_size_setting else "use a larger device"
        raise MemoryError(
            f"stage {stage.name!r} ran out of memory on {inputs.device or 'the CPU'}: {lower} and run the same "
            "command again (finished shards are kept)."
        ) from error
    if "status" in out:
        before = batch["status"] if "status" in batch else [None] * len(out["status"])
        allowed = {"ok", *stage.drop_reasons}
        for old, new in zip(before, out["status"], strict=True):
            if new != old and new not in allowed:
                raise ValueError(f"stage {stage.name!r} set the undeclared status {new!r}")
    return out


def run_shard(
    roots: datasets.Dataset,
    shard: int,
    keys: dict[str, str],
    config: BuildConfig,
    inputs: BuildInputs,
    timings,
    rank: int = 0,
    through: int | None = None,
) -> datasets.Dataset:
    """Shard `shard` of the roots through every stage (the first `through`), each result cached as
    `.cache/<stage>-<key>-<shard>.arrow`.

    A cached result is read back, not recomputed, once it matches the checksum recorded beside it; one that does
    not is set aside and recomputed (`files.cached_map`). A computed one is recorded beside its cache with the rank
    that computed it (`<cache>.json`, `{"rank": rank}`); `timings[stage]` accumulates the seconds each stage took.
    """
    cache = stage_cache_dir(config)
    num_shards = math.ceil(len(roots) / config.shard_size)
    rows = roots.select(range(shard * config.shard_size, min(len(roots), (shard + 1) * config.shard_size)))
    for stage in stages_of(config.method)[:through]:
        clock = time.perf_counter()
        key = keys[stage.name]
        cache_file = cache / f"{stage.name}-{key}-{shard:05d}-of-{num_shards:05d}.arrow"
        rows, computed = cached_map(
            rows,
            cache_file,
            function=_apply,
            batched=True,
            batch_size=stage.rows_per_call or config.shard_size,
            fn_kwargs={"stage": stage, "settings": settings_of(config, stage.settings), "inputs": inputs},
            features=datasets.Features({**rows.features, **stage.columns}),
            new_fingerprint=f"{key}-{shard}",
            desc=f"{stage.name} [{shard + 1}/{num_shards}]",
        )
        if computed:
            write_text(cache_file.with_name(cache_file.name + ".json"), json.dumps({"rank": rank}) + "\n")
        timings[stage.name] = timings.get(stage.name, 0.0) + time.perf_counter() - clock
    return rows


def node_root_shards(first_rank: int, ranks_on_node: int, world: int, num_shards: int) -> list[int]:
    """The root shards of the ranks `first_rank`, … `first_rank + ranks_on_node - 1` (one node's ranks)."""
    return sorted(
        shard
        for rank in range(first_rank, first_rank + ranks_on_node)
        for shard in range(rank, num_shards, world)
    )


def _plan_index(inputs: BuildInputs, state) -> None:
    """Every rank takes the main process's plan for the index (copy / shard / cpu) and places it on its node."""
    if not inputs.config.index_on_gpu:
        return
    inputs.node = this_node()
    least_free = min(inputs.node.free_bytes, default=0)
    if state.num_processes > 1:
        from accelerate.utils import gather_object

        least_free = min(gather_object([least_free]))
    node = replace(inputs.node, free_bytes=(least_free,) * len(inputs.node.free_bytes))
    plan = [inputs.plan_index_placement(node) if state.is_main_process else None]
    if state.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        broadcast_object_list(plan)
    inputs.placement = plan[0]
    if state.is_main_process:
        print(f"Index placement: {inputs.placement.kind}: {inputs.placement.reason}", file=sys.stderr)


def _search_on_node_main(roots, keys, config: BuildConfig, inputs: BuildInputs, timings, state) -> None:
    """A sharded index is searched by its node's main process only: every rank runs its root shards up to the
    first stage that reads the index, then the node's main process runs the node's shards through the last one."""
    stages = stages_of(config.method)
    reading = [number for number, stage in enumerate(stages) if "index" in stage.inputs]
    num_shards = math.ceil(len(roots) / config.shard_size)
    for shard in range(state.process_index, num_shards, state.num_processes):
        run_shard(roots, shard, keys, config, inputs, timings, state.process_index, reading[0])
    state.wait_for_everyone()
    if state.is_local_main_process:
        first_rank = state.process_index - state.local_process_index
        for shard in node_root_shards(first_rank, inputs.node.ranks_on_node, state.num_processes, num_shards):
            run_shard(roots, shard, keys, config, inputs, timings, state.process_index, reading[-1] + 1)
    state.wait_for_everyone()


def stage_cache_dir(config: BuildConfig) -> Path:
    """Where the stage caches and the index live (`cache_dir`, default `<output_dir>/.cache`)."""
    return Path(config.cache_dir or Path(config.output_dir) / ".cache").resolve()


def conform(rows: datasets.Dataset) -> datasets.Dataset:
    """`rows` with every column of `COLUMNS` (a method's missing ones empty: [] or null), in a fixed order."""
    missing = {name: feature for name, feature in COLUMNS.items() if name not in rows.column_names}
    if missing:
        rows = rows.map(
            lambda batch: {
                name: [[] if isinstance(feature, datasets.List) else None] * len(batch["id"])
                for name, feature in missing.items()
            },
            batched=True,
            features=datasets.Features({**rows.features, **missing}),
            desc="Columns",
        )
    return rows.select_columns([*(c for c in rows.column_names if c not in COLUMNS), *COLUMNS])


def _check_ranks_agree(config: BuildConfig, state) -> None:
    """Refuse a job whose ranks were launched with different settings (they would mix into one dataset)."""
    if state.num_processes == 1:
        return
    from accelerate.utils import gather_object

    settings = gather_object([asdict(config)])
    differing = sorted({name for other in settings[1:] for name in other if other[name] != settings[0][name]})
    if differing:
        raise ValueError(
            f"the ranks of this job were launched with different build settings ({', '.join(differing)}); "
            "launch every rank with the same --config and flags."
        )


class NothingToPackError(ValueError):
    """The build made no packed sequence: nothing is published."""


def build(config: BuildConfig) -> BuildCounts | None:
    """Run the whole build into `config.output_dir`; the main process returns the counts written to the card.

    Under `accelerate launch` / `torchrun` (any number of processes and machines, sharing `output_dir`), rank r
    embeds the corpus shards and runs the root shards whose index is r modulo the number of ranks, on its own
    device; the main process trains and writes the index once, then packs and publishes once every rank is done.
    Other ranks return None.

    Raises:
        OutputDirError: the folder is another's (see `publish`) or another build holds it.
        NothingToPackError: no root gave a packed sequence; the previous dataset in the folder is left as it was.
    """
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())  # CPU ranks (gloo) are ranks too
    _check_ranks_agree(config, state)
    output_dir = Path(config.output_dir).resolve()
    lock = None
    if state.is_main_process:
        claim_output_dir(output_dir, config.overwrite_output_dir)
        lock = lock_output_dir(output_dir)
    state.wait_for_everyone()
    try:
        return _build(config, output_dir, state)
    finally:
        if lock is not None:
            lock.release()


def searched_indexes(method: str) -> list[str]:
    """The indexes (`INDEXES`) that the stages of `method` search: concat and quest search none."""
    declared = {name for stage in stages_of(method) for name in stage.inputs}
    return [name for name in INDEXES if name in declared]


def load_inputs(
    config: BuildConfig, device: str | None = None
) -> tuple[datasets.Dataset, SourceCounts, list[SourceCounts], BuildInputs]:
    """The roots (sampled to `num_roots`, ids checked), their counts, each corpus source's counts, and the stages'
    inputs on `device` (their cache keys in `inputs.keys`).

    Raises:
        NothingToPackError: the roots or the corpus hold no non-empty document.
    """
    roots, root_counts = load_text_source(
        config.roots, config.roots_split, config.roots_text_column, config.roots_id_column, role="roots"
    )
    if config.num_roots is not None and config.num_roots < len(roots):
        roots = roots.shuffle(seed=config.seed).select(range(config.num_roots))
    check_unique_ids(roots, config.roots)
    corpus_parts = [
        load_text_source(
            source, config.corpus_split, config.corpus_text_column, config.corpus_id_column, role="corpus"
        )
        for source in config.corpus
    ]
    corpus = datasets.concatenate_datasets([part for part, _ in corpus_parts])
    if len(roots) == 0:
        raise NothingToPackError(
            f"roots {config.roots!r}: no non-empty document to build from ({root_counts.empty} empty)."
        )
    if len(corpus) == 0:
        raise NothingToPackError(f"corpus {config.corpus}: no non-empty document to retrieve from.")
    corpus_counts = [counts for _, counts in corpus_parts]
    keys = stage_keys(config, root_counts.identity, "+".join(c.identity for c in corpus_counts))
    return (
        roots,
        root_counts,
        corpus_counts,
        BuildInputs(config, corpus, stage_cache_dir(config), keys, device),
    )


def _build(config: BuildConfig, output_dir: Path, state) -> BuildCounts | None:
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    device = str(state.device) if state.device.type == "cuda" else None
    roots, root_counts, corpus_counts, inputs = load_inputs(config, device)
    keys = inputs.keys
    timings["load"] = time.perf_counter() - clock
    rank, world = state.process_index, state.num_processes
    clock = time.perf_counter()
    searched = searched_indexes(config.method)
    if state.is_main_process:
        for name in searched:
            cache_is_sound(
                inputs.index_path(name)
            )  # a damaged index file is set aside, and built again below
    state.wait_for_everyone()
    missing = [name for name in searched if not inputs.index_path(name).exists()]
    if missing:  # read by every rank before any of them can write it
        inputs.check_index_factory()  # before any embedding
    for name in missing:
        if name == "chunk_index":
            with state.main_process_first():  # the chunk dataset is written once, then read by every rank
                logger.info(
                    "Indexing %d chunks of %d corpus documents.", len(inputs.chunks), len(inputs.corpus)
                )
        inputs.embed_rows(name, rank, world)
        state.wait_for_everyone()
        if state.is_main_process:
            inputs.build_index(name)  # every embedding shard is cached now: trains and writes it once
        state.wait_for_everyone()
    if searched:
        timings["index"] = time.perf_counter() - clock
        _plan_index(inputs, state)
        if inputs.placement is not None and inputs.placement.kind == "shard":
            _search_on_node_main(roots, keys, config, inputs, timings, state)

    num_shards = math.ceil(len(roots) / config.shard_size)
    for shard in range(rank, num_shards, world):
        run_shard(roots, shard, keys, config, inputs, timings, rank)
    state.wait_for_everyone()
    if not state.is_main_process:
        return None
    rows = conform(
        datasets.concatenate_datasets(
            [
                run_shard(roots, shard, keys, config, inputs, {}) for shard in range(num_shards)
            ]  # all cached now
        )
    )

    clock = time.perf_counter()
    packed, units_left_over = pack_sequences(
        rows, settings_of(config, PackSettings), inputs.tokenizer, config.seed
    )
    timings["pack"] = time.perf_counter() - clock
    dependencies = rows.remove_columns(["unit_input_ids", "retrieved"]).rename_columns(
        {"id": "root_id", "text": "root_text"}
    )
    counts = BuildCounts.from_tables(
        config.method,
        statuses_of(stages_of(config.method)),
        root_counts,
        corpus_counts,
        dependencies,
        packed,
        units_left_over,
    )
    counts.seconds = {stage: round(seconds, 1) for stage, seconds in timings.items()}
    if packed is None:
        statuses = ", ".join(f"{status} {n}" for status, n in counts.roots_by_status.items() if n)
        held_back = (
            f"; {units_left_over} units held back in rows under min_row_fill" if units_left_over else ""
        )
        raise NothingToPackError(
            f"nothing to pack: no packed sequence from {counts.roots} roots ({statuses}{held_back}). Nothing was "
            f"published and {output_dir} is unchanged; its .cache/ keeps the work done. Try more --num_roots, a "
            "lower --epsilon or --min_row_fill."
        )
    publish(output_dir, packed, dependencies, counts, config)
    if config.push_to_hub:
        push_folder(output_dir, settings_of(config, OutputSettings))
    return counts


def main(argv: list[str] | None = None) -> BuildCounts | None:
    from trl import TrlParser

    argv = sys.argv[1:] if argv is None else argv
    (config,) = TrlParser((BuildConfig,)).parse_args_and_config(args=argv)
    counts = build(config)
    if counts is not None:  # the main process
        print_summary(counts, config.output_dir, method_label(config.method, asdict(config)))
    return counts
