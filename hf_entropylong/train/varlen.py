"""`entropylong_varlen`: PyTorch's own varlen attention kernel as a transformers attention implementation.

flash-attn needs a compile step (or a wheel matching the CUDA and torch versions). PyTorch ≥ 2.10 ships the same
FlashAttention-2 varlen kernels as `torch.nn.attention.varlen.varlen_attn`, and this module registers it with
transformers' `AttentionInterface` under [`VARLEN_ATTENTION`] ([`register_varlen_attention`], which the training
scripts call when a recipe names it), so `attn_implementation: entropylong_varlen` trains packed rows with
per-unit attention on any GPU with a recent torch, flash-attn installed or not.

The algorithm, for one layer:

1. The attention spans come from the batch, flattened to one sequence of T tokens (the padding-free layout of
   [`PackedCollator`]): `cu_seq_lens_q/k` when the collator passed them, otherwise they are derived from the
   per-unit `position_ids`, which restart at 0 at every span start ([`cu_seqlens_from_position_ids`]).
2. The key and value heads are repeated to the query heads (grouped-query attention): torch 2.10 `varlen_attn`
   does not expand them itself.
3. Queries, keys and values go from transformers' [1, heads, T, head_dim] to varlen's [T, heads, head_dim], and
   each span attends causally to itself only (`window_size=(-1, 0)`).

On CPU, where `varlen_attn` has no kernel, [`per_span_attention`] computes the same function (same signature) by
running causal sdpa on every span: the CPU reference of the tests, and a correct if slow fallback.

No attention mask is built for this implementation unless the batch has padding, which it refuses: the spans are
the only mask. Under DeepSpeed-Ulysses sequence parallelism (`UlyssesSPAttentionHF` with this implementation as
its core attention) the layer receives the heads of its rank over the whole sequence together with the
all-gathered `position_ids`, so step 1 finds the spans of the whole sequence, shard edges included.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, flash_attention_mask

VARLEN_ATTENTION = "entropylong_varlen"
CAUSAL_WINDOW = (-1, 0)


def cu_seqlens_from_position_ids(position_ids: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Cumulative span boundaries of a flattened packed batch, from positions that restart at 0 at every span.

    Args:
        position_ids (`torch.Tensor`): [1, T] or [T] per-span positions, e.g. `[[0, 1, 2, 0, 1, 0]]`.

    Returns:
        `(cu_seqlens, max_length)`: int32 boundaries `[0, s_1, s_1 + s_2, …, T]` and the longest span, e.g.
        `(tensor([0, 3, 5, 6]), 3)`.
    """
    positions = position_ids.reshape(-1)
    starts = (positions == 0).nonzero().flatten()
    if starts.numel() == 0 or starts[0] != 0:
        raise ValueError("position_ids must start every span at 0, the first token included.")
    end = torch.tensor([positions.numel()], device=positions.device)
    cu_seqlens = torch.cat([starts, end]).to(torch.int32)
    return cu_seqlens, int(cu_seqlens.diff().max())


def per_span_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    cu_seq_q: torch.Tensor,
    cu_seq_k: torch.Tensor,
    max_q: int,
    max_k: int,
    *,
    scale: float | None = None,
    window_size: tuple[int, int] = CAUSAL_WINDOW,
) -> torch.Tensor:
    """`varlen_attn` computed span by span with sdpa: the same arguments and result, on any device.

    Args:
        query, key, value (`torch.Tensor`): [T, heads, head_dim], the spans one after the other.
        cu_seq_q, cu_seq_k (`torch.Tensor`): span boundaries (equal here: self-attention).
        max_q, max_k (`int`): unused (the kernel's launch bounds), kept for the signature.
        scale (`float`, *optional*): the softmax scale; `1 / sqrt(head_dim)` when `None`.
        window_size (`tuple[int, int]`): only `(-1, 0)`, causal attention, is supported.
    """
    if window_size != CAUSAL_WINDOW or not torch.equal(cu_seq_q, cu_seq_k):
        raise NotImplementedError("per_span_attention computes causal self-attention only.")
    bounds = cu_seq_q.tolist()
    outputs = [
        F.scaled_dot_product_attention(
            query[start:end].transpose(0, 1),
            key[start:end].transpose(0, 1),
            value[start:end].transpose(0, 1),
            is_causal=True,
            scale=scale,
        ).transpose(0, 1)
        for start, end in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    return torch.cat(outputs)


def varlen_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """Per-span causal attention of a padding-free batch (the `AttentionInterface` signature).

    Args:
        module (`torch.nn.Module`): the attention layer (unused: the head counts come from the tensors).
        query (`torch.Tensor`): [1, heads, T, head_dim]; key and value [1, kv_heads, T, head_dim].
        attention_mask (`torch.Tensor`, *optional*): must be `None`: padded batches are refused.
        dropout (`float`): must be 0 (varlen_attn has no dropout).
        scaling (`float`, *optional*): the softmax scale.
        **kwargs: `cu_seq_lens_q`, `cu_seq_lens_k`, `max_length_q`, `max_length_k` (from [`PackedCollator`]),
            else `position_ids`.

    Returns:
        `(output, None)`, the output [1, T, heads, head_dim] as transformers expects it.
    """
    if attention_mask is not None or query.shape[0] != 1 or query.shape[2] != key.shape[2]:
        raise ValueError(
            f"{VARLEN_ATTENTION} trains padding-free packed batches ([1, T] with per-span position_ids, no "
            "attention_mask, no KV cache); use sdpa or flash_attention_2 for padded batches and generation."
        )
    if dropout:
        raise ValueError(f"{VARLEN_ATTENTION} has no attention dropout (got {dropout}).")
    cu_seq_q, cu_seq_k = kwargs.get("cu_seq_lens_q"), kwargs.get("cu_seq_lens_k")
    if cu_seq_q is None or cu_seq_k is None:
        cu_seq_q, max_q = cu_seqlens_from_position_ids(kwargs["position_ids"])
        cu_seq_k, max_k = cu_seq_q, max_q
    else:
        max_q, max_k = int(kwargs["max_length_q"]), int(kwargs["max_length_k"])
    groups = query.shape[1] // key.shape[1]
    query, key, value = (
        x[0].transpose(0, 1) for x in (query, repeat_kv(key, groups), repeat_kv(value, groups))
    )
    if query.is_cuda:
        from torch.nn.attention.varlen import varlen_attn  # torch >= 2.10

        attend = varlen_attn
    else:
        attend = per_span_attention
    cu_seq_q, cu_seq_k = cu_seq_q.to(query.device, torch.int32), cu_seq_k.to(query.device, torch.int32)
    output = attend(
        query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, scale=scaling, window_size=CAUSAL_WINDOW
    )
    return output.unsqueeze(0), None


def register_varlen_attention() -> str:
    """Register [`varlen_attention_forward`] with transformers as [`VARLEN_ATTENTION`] and return the name.

    Its mask function is flash-attn's: no mask at all unless the batch is padded (which the forward refuses).
    Registering again is harmless: a sequence-parallel wrapper installed over it (DeepSpeed-Ulysses replaces the
    entry of transformers' `ALL_ATTENTION_FUNCTIONS`, not the registry) stays in place.

    Example:
    ```python
    >>> from transformers import AutoModelForCausalLM
    >>> name = register_varlen_attention()
    >>> model = AutoModelForCausalLM.from_pretrained(path, attn_implementation=name)  # doctest: +SKIP
    ```
    """
    AttentionInterface.register(VARLEN_ATTENTION, varlen_attention_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(VARLEN_ATTENTION, flash_attention_mask)
    return VARLEN_ATTENTION
