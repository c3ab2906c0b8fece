"""On a GPU: the varlen paths (flash-attn, flex_attention, entropylong_varlen) give the CPU block-diagonal logits.

flex_attention batches are padded to whole blocks (`pad_to_multiple_of=FLEX_BLOCK_SIZE`), as the training scripts
do; 16-dim heads are the smallest the kernels take, 64 the recipes' models' size.
"""

import importlib.util

import pytest
import torch
from tiny_models import tiny_llama

from hf_entropylong.train.spans import FLEX_BLOCK_SIZE, PackedCollator
from hf_entropylong.train.varlen import VARLEN_ATTENTION

from .test_spans import packed_rows, unit_slices

GPU_VARLEN = ["flex_attention", VARLEN_ATTENTION] + (
    ["flash_attention_2"] if importlib.util.find_spec("flash_attn") else []
)


def gpu_llama(attn: str, head_dim: int):
    return tiny_llama(
        hidden_size=4 * head_dim,
        intermediate_size=128,
        max_position_embeddings=256,
        attn_implementation=attn,
    )


@pytest.mark.require_gpu
@pytest.mark.parametrize("head_dim", [16, 64])
@pytest.mark.parametrize("attn", GPU_VARLEN)
def test_gpu_varlen_matches_cpu_block_diagonal(attn, head_dim):
    multiple = FLEX_BLOCK_SIZE if attn == "flex_attention" else None
    batch = PackedCollator(pad_token_id=0, pad_to_multiple_of=multiple)(packed_rows())
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    model = gpu_llama(attn, head_dim).to("cuda", torch.bfloat16).train()
    cuda_inputs = {k: v.cuda() if torch.is_tensor(v) else v for k, v in inputs.items()}
    logits = model(**cuda_inputs, use_cache=False).logits
    logits.float().square().mean().backward()  # the training path: backward kernels must lower too
    logits = logits.detach().float().cpu()
    with torch.no_grad():
        reference = gpu_llama("sdpa", head_dim)(**inputs, use_cache=False).logits
    relative = (logits - reference).norm() / reference.norm()
    assert relative < 2e-2  # bf16 against fp32
    for row in range(2):
        for unit in unit_slices(row):
            unit_rel = (logits[0, unit] - reference[0, unit]).norm() / reference[0, unit].norm()
            assert unit_rel < 2e-2
