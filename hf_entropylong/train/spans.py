"""Attention spans of packed EntropyLong sequences: validation, collation and the parallelism guard.

A packed row holds `input_ids` of exactly `max_seq_length` tokens and `seq_lengths`, the lengths of its
consecutive attention spans. Each span is one EntropyLong unit [context_1 … context_m ; root] — the root must see
its contexts, and no unit may see another — except the last span when `num_padding_tokens > 0`, which is the
padding tail. A full-row baseline's row (concat, Quest, NExtLong) is one span, `seq_lengths == [max_seq_length]`.

The collator turns rows into the padding-free layout that every attention implementation in transformers reads
the same way:

- the rows of a batch are flattened into one sequence of shape [1, batch × max_seq_length];
- `position_ids` restart at 0 at the start of every span, and there is no `attention_mask`. flash-attn derives
  `cu_seqlens` from them (varlen kernels; the collator also passes `cu_seq_lens_q/k` so no layer recomputes
  them), while sdpa, eager and flex_attention build the equivalent block-diagonal causal mask from the same
  restarts (transformers' packed-sequence detection in `masking_utils`);
- `labels` are `-100` on the first token of every span, so the last token of one unit never predicts the first
  token of the next (the loss never crosses a boundary), and on the whole padding tail.

It extends TRL's `DataCollatorForLanguageModeling` (padding-free mode), adding only the padding-tail labels.
With `pad_to_multiple_of` (set to [`FLEX_BLOCK_SIZE`] for flex_attention by the training scripts) the flattened
batch is padded at the end with pad tokens whose positions are 0: each one is a span of its own, with no loss.

Sequence parallelism must keep the spans. Torch context parallelism (ring attention, `cp_size > 1`) replaces
every mask by plain causal attention, so packed units would silently attend to each other: refused.
DeepSpeed-Ulysses (`sp_size > 1`, Accelerate's `sp_backend: deepspeed`) keeps them with the kernels that read the
spans from the `position_ids` it all-gathers before attention — flash-attn's and [`VARLEN_ATTENTION`] — when the
heads split evenly over the ranks. Its sdpa path drops the mask (one causal sequence) and, in DeepSpeed 0.19, its
flex path rebuilds a plain causal one: refused. Its data loader (`UlyssesSPDataLoaderAdapter`) cuts every tensor
of a batch along dimension 1 and stops with an IndexError on the 1-D `cu_seq_lens_q/k`; under it the batches go
through [`ShardableCollator`], which leaves out the entries that describe the whole flattened sequence
([`WHOLE_SEQUENCE_KEYS`]): each attention layer derives them again from the gathered `position_ids`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow.compute as pc
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from .varlen import VARLEN_ATTENTION

PACKED_COLUMNS = ("input_ids", "seq_lengths", "num_padding_tokens")
# The kernels that find the spans in the all-gathered position_ids, so DeepSpeed-Ulysses keeps units apart, by the
# exact names transformers, Accelerate and DeepSpeed know them by (flash-attn's packages and their Hub builds).
SEQUENCE_PARALLEL_ATTENTION = (
    "flash_attention_2",
    "flash_attention_3",
    "kernels-community/flash-attn2",
    "kernels-community/vllm-flash-attn3",
    VARLEN_ATTENTION,
)
# Entries of a padding-free batch that describe the whole flattened sequence, not one entry per token.
WHOLE_SEQUENCE_KEYS = ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")
# flex_attention's block size: its compiled kernels tile queries and keys in blocks of 128 tokens.
FLEX_BLOCK_SIZE = 128


def validate_packed_dataset(dataset, source: str = "dataset") -> int:
    """Check that `dataset` follows the packed schema and return its `max_seq_length`.

    Every row must have `input_ids` of one common length, `seq_lengths` of positive lengths summing to it, and
    `0 <= num_padding_tokens <=` the last span. Errors name `source` and the first bad row.
    """
    missing = [c for c in PACKED_COLUMNS if c not in dataset.column_names]
    if missing:
        raise ValueError(
            f"{source}: missing column(s) {missing}; a packed EntropyLong dataset has {list(PACKED_COLUMNS)} "
            f"(found {dataset.column_names})."
        )
    if len(dataset) == 0:
        raise ValueError(f"{source}: no rows.")
    table = dataset.with_format("arrow")[:]
    lengths = pc.list_value_length(table.column("input_ids")).to_pylist()
    max_seq_length = lengths[0]
    spans = table.column("seq_lengths").to_pylist()
    padding = table.column("num_padding_tokens").to_pylist()
    for row, (length, row_spans, pad) in enumerate(zip(lengths, spans, padding, strict=True)):
        where = f"{source}, row {row}"
        if length != max_seq_length:
            raise ValueError(
                f"{where}: {length} input_ids, but row 0 has {max_seq_length}; rows must be equal."
            )
        if not row_spans or min(row_spans) <= 0 or sum(row_spans) != length:
            raise ValueError(
                f"{where}: seq_lengths {row_spans} must be positive and sum to {length} input_ids."
            )
        if pad < 0 or (pad > 0 and row_spans[-1] != pad):
            raise ValueError(
                f"{where}: num_padding_tokens={pad} must be 0 or the length of the last span ({row_spans[-1]})."
            )
    return max_seq_length


def span_labels(input_ids: list[int], num_padding_tokens: int) -> list[int]:
    """`input_ids` with the padding tail set to -100 (span starts are masked by the collator)."""
    keep = len(input_ids) - num_padding_tokens
    return list(input_ids[:keep]) + [-100] * num_padding_tokens


@dataclass
class PackedCollator(DataCollatorForLanguageModeling):
    """Padding-free collator for pre-packed rows (`input_ids`, `seq_lengths`, `num_padding_tokens`).

    Returns `input_ids`, `labels`, `position_ids` of shape [1, batch × max_seq_length] and the varlen
    `cu_seq_lens_q/k`, `max_length_q/k`; no `attention_mask` (see the module docstring).

    Example:
    ```python
    >>> collator = PackedCollator(pad_token_id=0)
    >>> batch = collator([{"input_ids": [5, 6, 7, 8, 0], "seq_lengths": [3, 1, 1], "num_padding_tokens": 1}])
    >>> batch["position_ids"].tolist(), batch["labels"].tolist()
    ([[0, 1, 2, 0, 0]], [[-100, 6, 7, -100, -100]])
    ```
    """

    padding_free: bool = True

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        rows = []
        for example in examples:
            ids, spans = example["input_ids"], example["seq_lengths"]
            if sum(spans) != len(ids):
                raise ValueError(
                    f"Packed row: seq_lengths sum to {sum(spans)}, but it has {len(ids)} input_ids."
                )
            labels = span_labels(ids, int(example.get("num_padding_tokens", 0)))
            rows.append({"input_ids": ids, "seq_lengths": spans, "labels": labels})
        batch = super().torch_call(rows)
        batch.pop(
            "seq_idx", None
        )  # only for linear-attention layers; keeps the batch to what Llama-style models take
        return batch


@dataclass
class ShardableCollator:
    """A padding-free collator whose batches hold one entry per token only, for a sequence-parallel data loader.

    DeepSpeed's `UlyssesSPDataLoaderAdapter` (DeepSpeed 0.18.2-0.19.8) all-gathers every tensor of a batch by its
    length along dimension 1 and cuts it into one shard per rank: the 1-D `cu_seq_lens_q/k` raise an IndexError,
    and whole-sequence values would be wrong for a shard anyway. This wrapper drops [`WHOLE_SEQUENCE_KEYS`];
    `input_ids`, `labels` and the per-unit `position_ids` are sharded, and the attention (flash-attn or
    [`VARLEN_ATTENTION`] inside `UlyssesSPAttentionHF`) recomputes the span boundaries from the gathered
    `position_ids`. [`EntropyLongTrainer`] applies it whenever Accelerate runs DeepSpeed-Ulysses.

    Args:
        collator (`Callable`): the padding-free collator to wrap ([`PackedCollator`], or TRL's for SFT).
    """

    collator: Callable[[list[dict[str, Any]]], dict[str, Any]]

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.collator(examples)
        return {key: value for key, value in batch.items() if key not in WHOLE_SEQUENCE_KEYS}


def check_sp_attention(parallelism_config, attn_implementation: str | None) -> None:
    """Refuse a DeepSpeed-Ulysses run whose attention names are not one varlen kernel of
    [`SEQUENCE_PARALLEL_ATTENTION`], by its exact name, for both the model and the sequence-parallel wrapper."""
    sp_size = parallelism_config.sp_size
    sp_attn = getattr(parallelism_config.sp_handler, "sp_attn_implementation", None) or "sdpa"
    for name, value in (("sp_attn_implementation", sp_attn), ("attn_implementation", attn_implementation)):
        if value not in SEQUENCE_PARALLEL_ATTENTION:
            raise ValueError(
                f"sp_size={sp_size} with {name}={value!r}: under DeepSpeed-Ulysses only varlen kernels keep packed "
                f"units apart (sdpa/flex see one causal sequence). Use one of {SEQUENCE_PARALLEL_ATTENTION} for "
                "both the model and parallelism_config_sp_attn_implementation."
            )
    if sp_attn != attn_implementation:
        raise ValueError(
            f"sp_size={sp_size}: parallelism_config_sp_attn_implementation={sp_attn!r} and attn_implementation="
            f"{attn_implementation!r} differ; DeepSpeed-Ulysses wraps the model's own attention, so name the same "
            "kernel in both."
        )


def check_parallelism(
    parallelism_config,
    model_config,
    attn_implementation: str | None,
    tokens_per_step: int | None = None,
) -> None:
    """Refuse the sequence-parallel combinations that would let packed units attend to each other.

    Args:
        parallelism_config (`accelerate.ParallelismConfig` or `None`):
            The accelerator's parallelism config (`trainer.accelerator.parallelism_config`).
        model_config (`transformers.PretrainedConfig`):
            The model's config, for the attention head counts.
        attn_implementation (`str` or `None`):
            The model's attention implementation.
        tokens_per_step (`int`, *optional*):
            Length of the flattened micro-batch, which Ulysses splits over the `sp_size` ranks.

    Raises:
        `ValueError`: naming the unsafe setting and what to use instead.
    """
    if parallelism_config is None:
        return
    if parallelism_config.cp_size > 1:
        raise ValueError(
            f"cp_size={parallelism_config.cp_size}: torch context parallelism (ring attention) replaces the "
            "attention mask by plain causal attention, so packed EntropyLong units would attend to each other. "
            "Use DeepSpeed-Ulysses sequence parallelism instead (parallelism_config_sp_size, "
            "parallelism_config_sp_backend: deepspeed, parallelism_config_sp_attn_implementation: "
            "kernels-community/flash-attn2); see recipes/accelerate_configs/."
        )
    sp_size = parallelism_config.sp_size
    if sp_size <= 1:
        return
    check_sp_attention(parallelism_config, attn_implementation)
    heads = model_config.num_attention_heads
    kv_heads = getattr(model_config, "num_key_value_heads", None) or heads
    if heads % sp_size:
        raise ValueError(f"sp_size={sp_size} must divide num_attention_heads={heads}.")
    if kv_heads % sp_size and sp_size % kv_heads:
        raise ValueError(
            f"sp_size={sp_size} and num_key_value_heads={kv_heads}: one must divide the other for Ulysses."
        )
    if tokens_per_step is not None and tokens_per_step % sp_size:
        raise ValueError(
            f"sp_size={sp_size} must divide the {tokens_per_step} tokens of a micro-batch (max_seq_length × "
            "per_device_train_batch_size), or the last rank's shard would be padded across a unit."
        )
