"""A CPU build of the Hub kernel `kernels-community/flash-attn2` for the tests: flash-attn's two entry points with
their signatures, computed with sdpa (varlen: span by span, through `per_span_attention`).

The Hub kernel has CUDA builds only. `kernels` loads this folder in its place when `LOCAL_KERNELS` maps the
repository to it, so transformers and DeepSpeed resolve the recipes' attention name exactly as on a GPU.
"""

import torch
import torch.nn.functional as F

from hf_entropylong.train.varlen import CAUSAL_WINDOW, per_span_attention


def _repeat_kv(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, heads_dim: int):
    groups = query.shape[heads_dim] // key.shape[heads_dim]
    return key.repeat_interleave(groups, heads_dim), value.repeat_interleave(groups, heads_dim)


def flash_attn_varlen_func(
    q,
    k,
    v,
    cu_seqlens_q,
    cu_seqlens_k,
    max_seqlen_q,
    max_seqlen_k,
    dropout_p=0.0,
    softmax_scale=None,
    causal=False,
    window_size=(-1, -1),
    softcap=0.0,
    alibi_slopes=None,
    deterministic=False,
    return_attn_probs=False,
    block_table=None,
):
    """[T, heads, dim] queries, [T, kv_heads, dim] keys and values; causal attention within each span."""
    if not causal or dropout_p or softcap or alibi_slopes is not None or tuple(window_size) != (-1, -1):
        raise NotImplementedError("this CPU build computes causal varlen attention only")
    k, v = _repeat_kv(q, k, v, 1)
    return per_span_attention(
        q,
        k,
        v,
        cu_seqlens_q,
        cu_seqlens_k,
        max_seqlen_q,
        max_seqlen_k,
        scale=softmax_scale,
        window_size=CAUSAL_WINDOW,
    )


def flash_attn_func(
    q,
    k,
    v,
    dropout_p=0.0,
    softmax_scale=None,
    causal=False,
    window_size=(-1, -1),
    softcap=0.0,
    alibi_slopes=None,
    deterministic=False,
    return_attn_probs=False,
):
    """[batch, seq, heads, dim] attention, causal or not."""
    if dropout_p or softcap or alibi_slopes is not None or tuple(window_size) != (-1, -1):
        raise NotImplementedError("this CPU build computes plain (causal) attention only")
    k, v = _repeat_kv(q, k, v, 2)
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal, scale=softmax_scale
    )
    return out.transpose(1, 2)
