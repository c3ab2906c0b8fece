"""`entropylong_varlen`: registered with transformers, spans from position ids, equal to the block-diagonal sdpa."""

import inspect
import subprocess
import sys

import pytest
import torch
from tiny_models import tiny_llama
from torch.nn.attention.varlen import varlen_attn
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

from hf_entropylong.train.spans import PackedCollator
from hf_entropylong.train.varlen import (
    VARLEN_ATTENTION,
    cu_seqlens_from_position_ids,
    per_span_attention,
    register_varlen_attention,
)

from .test_spans import SPANS, packed_rows


def test_registered_with_transformers_on_request():
    code = "import hf_entropylong.train, transformers; print('entropylong_varlen' in transformers.AttentionInterface())"
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert imported.stdout.strip() == "False"  # importing the package registers nothing
    assert register_varlen_attention() == VARLEN_ATTENTION
    assert VARLEN_ATTENTION in AttentionInterface() and VARLEN_ATTENTION in ALL_MASK_ATTENTION_FUNCTIONS
    model = tiny_llama(attn_implementation=VARLEN_ATTENTION)
    assert model.config._attn_implementation == VARLEN_ATTENTION


def test_cpu_reference_has_the_kernel_signature():
    kernel = list(inspect.signature(varlen_attn).parameters)
    reference = list(inspect.signature(per_span_attention).parameters)
    assert reference == kernel[:7] + ["scale", "window_size"] and set(reference) <= set(kernel)


def test_cu_seqlens_from_position_ids():
    batch = PackedCollator(pad_token_id=0)(packed_rows())
    cu_seqlens, longest = cu_seqlens_from_position_ids(batch["position_ids"])
    assert cu_seqlens.dtype == torch.int32 and cu_seqlens.tolist() == batch["cu_seq_lens_q"].tolist()
    assert longest == max(SPANS) == batch["max_length_q"]
    assert cu_seqlens_from_position_ids(torch.tensor([0, 1, 2, 0, 1, 0]))[0].tolist() == [0, 3, 5, 6]
    with pytest.raises(ValueError, match="start every span at 0"):
        cu_seqlens_from_position_ids(torch.tensor([[1, 2, 0]]))


@pytest.mark.parametrize("spans_from", ["cu_seq_lens", "position_ids"])
def test_logits_and_gradients_equal_block_diagonal_sdpa(spans_from):
    register_varlen_attention()
    batch = PackedCollator(pad_token_id=0)(packed_rows())
    if spans_from == "position_ids":
        batch = {k: batch[k] for k in ("input_ids", "position_ids", "labels")}
    results = {}
    for attn in ("sdpa", VARLEN_ATTENTION):
        model = tiny_llama(
            num_key_value_heads=1, max_position_embeddings=128, attn_implementation=attn
        ).train()
        output = model(**batch, use_cache=False)
        output.loss.backward()
        results[attn] = output.logits, {n: p.grad for n, p in model.named_parameters()}
    (sdpa_logits, sdpa_grads), (varlen_logits, varlen_grads) = results.values()
    torch.testing.assert_close(varlen_logits, sdpa_logits, atol=1e-5, rtol=1e-5)
    for name, grad in sdpa_grads.items():
        torch.testing.assert_close(varlen_grads[name], grad, atol=1e-6, rtol=1e-5, msg=name)


def test_refuses_padded_batches():
    register_varlen_attention()
    model = tiny_llama(attn_implementation=VARLEN_ATTENTION)
    ids = torch.tensor([[5, 6, 7, 0], [5, 6, 7, 8]])
    with pytest.raises(ValueError, match="padding-free"):
        model(input_ids=ids, attention_mask=(ids != 0).long(), use_cache=False)
