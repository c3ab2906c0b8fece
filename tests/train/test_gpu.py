"""On a GPU: the varlen paths (flash-attn, flex_attention) give the CPU block-diagonal path's logits."""

import importlib.util

import pytest
import torch
from tiny_models import tiny_llama

from hf_entropylong.train.spans import PackedCollator

from .test_spans import packed_rows, unit_slices

GPU_VARLEN = ["flex_attention"] + (["flash_attention_2"] if importlib.util.find_spec("flash_attn") else [])


def gpu_llama(attn: str):
    """The spans tests' tiny Llama with 16-dim heads: flex_attention's kernels need at least 16."""
    return tiny_llama(
        hidden_size=64, intermediate_size=128, max_position_embeddings=128, attn_implementation=attn
    )


@pytest.mark.require_gpu
@pytest.mark.parametrize("attn", GPU_VARLEN)
def test_gpu_varlen_matches_cpu_block_diagonal(attn):
    batch = PackedCollator(pad_token_id=0)(packed_rows())
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        reference = gpu_llama("sdpa")(**inputs, use_cache=False).logits
        model = gpu_llama(attn).to("cuda", torch.bfloat16)
        cuda_inputs = {k: v.cuda() if torch.is_tensor(v) else v for k, v in inputs.items()}
        logits = model(**cuda_inputs, use_cache=False).logits.float().cpu()
    relative = (logits - reference).norm() / reference.norm()
    assert relative < 2e-2  # bf16 against fp32
    for unit in unit_slices(1):
        unit_rel = (logits[0, unit] - reference[0, unit]).norm() / reference[0, unit].norm()
        assert unit_rel < 2e-2
