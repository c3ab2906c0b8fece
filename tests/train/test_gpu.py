"""On a GPU: the varlen paths (flash-attn, flex_attention, entropylong_varlen) and Liger's kernels give the CPU
block-diagonal loss, logits and gradients.

flex_attention batches are padded to whole blocks (`pad_to_multiple_of=FLEX_BLOCK_SIZE`), as the training scripts
do; 16-dim heads are the smallest the kernels take, 64 the recipes' models' size. The GPU runs in bf16 against
the CPU's float32, so the bounds are bf16 rounding; a unit attending across its boundary is off by O(1).
"""

import importlib.util

import pytest
import torch
from tiny_models import tiny_llama

from hf_entropylong.train.config import apply_liger_kernels
from hf_entropylong.train.spans import FLEX_BLOCK_SIZE, PackedCollator
from hf_entropylong.train.varlen import VARLEN_ATTENTION, register_varlen_attention

from .test_spans import packed_rows, unit_slices

GPU_VARLEN = ["flex_attention", VARLEN_ATTENTION] + (
    ["flash_attention_2"] if importlib.util.find_spec("flash_attn") else []
)


def gpu_llama(attn: str, head_dim: int):
    register_varlen_attention()
    return tiny_llama(
        hidden_size=4 * head_dim,
        intermediate_size=128,
        max_position_embeddings=256,
        attn_implementation=attn,
    ).train()


def relative(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.detach().float().cpu(), ref.detach().float().cpu()
    return float((out - ref).norm() / ref.norm())


def step(model, batch: dict):
    """Loss, logits and flattened gradients of one forward/backward of `model` on `batch`."""
    device = next(model.parameters()).device
    output = model(
        **{k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}, use_cache=False
    )
    output.loss.backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters()])
    return output.loss, output.logits, grads


def cpu_reference(head_dim: int, batch: dict):
    return step(gpu_llama("sdpa", head_dim), batch)


@pytest.mark.require_gpu
@pytest.mark.parametrize("head_dim", [16, 64])
@pytest.mark.parametrize("attn", GPU_VARLEN)
def test_gpu_varlen_matches_cpu_block_diagonal(attn, head_dim):
    multiple = FLEX_BLOCK_SIZE if attn == "flex_attention" else None
    batch = PackedCollator(pad_token_id=0, pad_to_multiple_of=multiple)(packed_rows())
    loss, logits, grads = step(gpu_llama(attn, head_dim).to("cuda", torch.bfloat16), batch)
    ref_loss, ref_logits, ref_grads = cpu_reference(head_dim, batch)
    assert relative(loss, ref_loss) < 1e-2
    assert relative(logits, ref_logits) < 2e-2  # bf16 against fp32
    for row in range(2):
        for unit in unit_slices(row):
            assert relative(logits[0, unit], ref_logits[0, unit]) < 2e-2
    assert relative(grads, ref_grads) < 5e-2


@pytest.mark.require_gpu
def test_liger_kernels_match_the_plain_layers():
    """Liger's RoPE/RMSNorm/SwiGLU (`liger_kernels`) against the same model's own layers, both on the GPU."""
    pytest.importorskip("liger_kernel")
    batch = PackedCollator(pad_token_id=0)(packed_rows())
    plain = step(gpu_llama(VARLEN_ATTENTION, 64).to("cuda", torch.bfloat16), batch)
    liger_model = gpu_llama(VARLEN_ATTENTION, 64).to("cuda", torch.bfloat16)
    apply_liger_kernels(liger_model)
    assert liger_model.model.norm._get_name() == "LigerRMSNorm"  # Liger rebinds methods, keeps the class
    liger = step(liger_model, batch)
    assert relative(liger[0], plain[0]) < 1e-2 and relative(liger[1], plain[1]) < 2e-2
    assert relative(liger[2], plain[2]) < 5e-2
