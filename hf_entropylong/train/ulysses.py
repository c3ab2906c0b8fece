"""Ulysses sequence parallelism over `torch.distributed`, keeping packed units apart (testable on CPU with gloo).

A packed micro-batch of T tokens (the padding-free layout of [`PackedCollator`]) is split over the P ranks of a
sequence-parallel group: rank r holds tokens [r·T/P, (r+1)·T/P) and runs embeddings, MLPs, norms, RoPE (with its
own slice of the per-unit `position_ids`) and the LM head on its T/P tokens only. Attention needs every token of a
unit, so each attention layer ([`ulysses_attention_forward`]):

1. all-to-all: queries, keys and values go from [1, heads, T/P, d] (sequence shard, all heads) to
   [1, heads/P, T, d] (all tokens, a shard of the heads) — key/value heads first repeated up to P when there are
   fewer than P of them;
2. runs an inner attention implementation over the whole sequence with the span boundaries of the whole batch,
   `cu_seq_lens_q/k`, which [`shard_packed_batch`] keeps unsharded: every unit attends to itself only, exactly as
   without sequence parallelism ([`VARLEN_ATTENTION`], i.e. torch's `varlen_attn` on GPU and per-span sdpa on
   CPU, or `flash_attention_2`);
3. all-to-all back to [1, T/P, heads, d], the sequence shard again.

The all-to-all is its own adjoint, so the backward pass runs the inverse exchange ([`_AllToAll`]). The loss
is cut at the shard edges by shifting the labels on the whole batch first (`shift_labels`: the target of a
shard's last token is the next shard's first token) and dividing every rank's summed token losses by the
batch's total target count (`num_items_in_batch`): the ranks' losses add up to the unsharded loss, and the
gradients of the replicated parameters, summed over the group ([`all_reduce_gradients`]), are its gradients.

This is the algorithm of DeepSpeed-Ulysses (which the 8B recipe runs through Accelerate's
`parallelism_config_sp_backend: deepspeed` on GPUs), written over plain `torch.distributed` collectives so that
its equivalence to the unsharded run is proven on CPU. Use it in a custom loop::

    name = register_ulysses_attention(group)  # after dist.init_process_group
    model.set_attn_implementation(name)
    loss = model(**shard_packed_batch(collator(rows), rank, world_size), use_cache=False).loss
    loss.backward()
    all_reduce_gradients(model, group)
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.distributed as dist
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv

from .varlen import VARLEN_ATTENTION

ULYSSES_ATTENTION = "entropylong_ulysses"
# Batch entries that describe the whole flattened sequence and stay unsharded.
WHOLE_SEQUENCE_KEYS = ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")


class _AllToAll(torch.autograd.Function):
    """Split `tensor` into P chunks along `scatter_dim`, send chunk i to rank i, concatenate along `gather_dim`."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, group, scatter_dim: int, gather_dim: int) -> torch.Tensor:
        ctx.group, ctx.scatter_dim, ctx.gather_dim = group, scatter_dim, gather_dim
        world_size = dist.get_world_size(group)
        inputs = [chunk.contiguous() for chunk in tensor.chunk(world_size, dim=scatter_dim)]
        outputs = [torch.empty_like(chunk) for chunk in inputs]
        dist.all_to_all(outputs, inputs, group=group)
        return torch.cat(outputs, dim=gather_dim)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return _AllToAll.apply(grad, ctx.group, ctx.gather_dim, ctx.scatter_dim), None, None, None


def ulysses_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    *,
    group: dist.ProcessGroup | None,
    inner: str,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """Attention of a sequence shard over the whole sequence (the `AttentionInterface` signature).

    Args:
        module (`torch.nn.Module`): the attention layer, passed on to `inner`.
        query (`torch.Tensor`): [1, heads, T/P, head_dim]; key and value [1, kv_heads, T/P, head_dim].
        attention_mask (`torch.Tensor`, *optional*): must be `None` (padding-free batches only).
        group (`torch.distributed.ProcessGroup`, *optional*): the sequence-parallel group; the world when `None`.
        inner (`str`): a varlen attention implementation registered with `AttentionInterface`.
        **kwargs: `cu_seq_lens_q/k`, `max_length_q/k` of the whole sequence (see [`shard_packed_batch`]);
            `scaling` and the rest are passed to `inner`. The shard's `position_ids` are dropped.

    Returns:
        `(output, None)`, the output [1, T/P, heads, head_dim] of this rank's tokens.
    """
    world_size = dist.get_world_size(group)
    heads, kv_heads = query.shape[1], key.shape[1]
    if attention_mask is not None or any(kwargs.get(k) is None for k in WHOLE_SEQUENCE_KEYS):
        raise ValueError(
            f"{ULYSSES_ATTENTION} needs a padding-free batch from shard_packed_batch (cu_seq_lens_q/k and "
            "max_length_q/k of the whole sequence, no attention_mask)."
        )
    if heads % world_size or (kv_heads % world_size and world_size % kv_heads):
        raise ValueError(
            f"Ulysses over {world_size} ranks: {heads} query heads and {kv_heads} key/value heads must split evenly."
        )
    if kv_heads < world_size:
        key, value = repeat_kv(key, world_size // kv_heads), repeat_kv(value, world_size // kv_heads)
    query, key, value = (_AllToAll.apply(x, group, 1, 2) for x in (query, key, value))
    kwargs.pop("position_ids", None)  # this shard's; the spans of the whole sequence are in cu_seq_lens
    output, _ = AttentionInterface()[inner](module, query, key, value, None, **kwargs)
    return _AllToAll.apply(output, group, 1, 2), None


def register_ulysses_attention(group: dist.ProcessGroup | None = None, inner: str = VARLEN_ATTENTION) -> str:
    """Register [`ulysses_attention_forward`] over `group` with `inner` attention and return its name.

    Args:
        group (`torch.distributed.ProcessGroup`, *optional*): the sequence-parallel group (default: the world).
        inner (`str`): the attention run over the whole sequence: [`VARLEN_ATTENTION`] (default) or
            `flash_attention_2`; both read the unit boundaries from `cu_seq_lens_q/k`.

    Returns:
        `"entropylong_ulysses"`, for `model.set_attn_implementation` or `attn_implementation=`.
    """
    AttentionInterface.register(
        ULYSSES_ATTENTION, functools.partial(ulysses_attention_forward, group=group, inner=inner)
    )
    return ULYSSES_ATTENTION


def shard_packed_batch(batch: dict[str, Any], rank: int, world_size: int) -> dict[str, Any]:
    """This rank's contiguous slice of a padding-free packed batch, with labels shifted before the cut.

    Args:
        batch (`dict`): a [`PackedCollator`] batch: `input_ids`, `position_ids`, `labels` of shape [1, T] and the
            whole sequence's `cu_seq_lens_q/k`, `max_length_q/k`.
        rank (`int`), world_size (`int`): this rank in the sequence-parallel group and the group's size P.

    Returns:
        `input_ids`, `position_ids`, `labels` and `shift_labels` of shape [1, T/P] (the model's loss reads
        `shift_labels`: the next token of every position, -100 at span starts, padding and the very end),
        `num_items_in_batch` (the whole batch's target count) and the unsharded span boundaries.
    """
    length = batch["input_ids"].shape[1]
    if batch["input_ids"].shape[0] != 1 or length % world_size:
        raise ValueError(
            f"shard_packed_batch: a padding-free [1, T] batch with T divisible by {world_size} ranks, got "
            f"{tuple(batch['input_ids'].shape)}."
        )
    labels = batch["labels"]
    shift_labels = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=-100)
    shard = slice(rank * length // world_size, (rank + 1) * length // world_size)
    return {
        "input_ids": batch["input_ids"][:, shard],
        "position_ids": batch["position_ids"][:, shard],
        "labels": labels[:, shard],
        "shift_labels": shift_labels[:, shard],
        "num_items_in_batch": int((shift_labels != -100).sum()),
        **{key: batch[key] for key in WHOLE_SEQUENCE_KEYS},
    }


def all_reduce_gradients(model: torch.nn.Module, group: dist.ProcessGroup | None = None) -> None:
    """Sum the gradients of the (replicated) parameters over the sequence-parallel group, in place."""
    for parameter in model.parameters():
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad, group=group)
