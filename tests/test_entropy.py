import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from hf_entropylong.entropy import (
    batch_document_entropy,
    document_entropy,
    entropy_from_logits,
    high_entropy_positions,
    next_token_entropy,
)


@pytest.fixture(scope="module")
def tiny_lm():
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    return LlamaForCausalLM(config).eval()


def reference_entropy(model, ids: list[int]) -> np.ndarray:
    """Full logits, log-softmax in float64: H of the prediction of token t at index t."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double()
    log_probs = torch.log_softmax(logits, -1)
    out = np.full(len(ids), np.nan)
    out[1:] = (-(log_probs.exp() * log_probs).sum(-1))[:-1].numpy()
    return out


def test_entropy_from_logits_matches_definition():
    logits = torch.randn(3, 11, dtype=torch.bfloat16)
    probs = torch.softmax(logits.double(), -1)
    expected = -(probs * probs.log()).sum(-1)
    assert torch.allclose(entropy_from_logits(logits).double(), expected, atol=1e-5)
    assert entropy_from_logits(logits).dtype == torch.float32
    uniform = torch.zeros(5)
    assert entropy_from_logits(uniform).item() == pytest.approx(np.log(5), rel=1e-6)


def test_next_token_entropy_matches_float64_reference(tiny_lm):
    ids = torch.randint(0, 97, (1, 40)).tolist()[0]
    got = next_token_entropy(tiny_lm, torch.tensor([ids]))[0].numpy()
    expected = reference_entropy(tiny_lm, ids)
    assert np.isnan(got[0])
    np.testing.assert_allclose(got[1:], expected[1:], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("chunk_size", [1, 7, 4096])
def test_chunking_changes_nothing(tiny_lm, chunk_size):
    ids = torch.randint(0, 97, (2, 33))
    full = next_token_entropy(tiny_lm, ids, chunk_size=4096)
    chunked = next_token_entropy(tiny_lm, ids, chunk_size=chunk_size)
    torch.testing.assert_close(chunked, full, equal_nan=True)


def test_batching_with_padding_equals_one_by_one(tiny_lm):
    documents = [torch.randint(0, 97, (n,)).tolist() for n in (5, 31, 17, 2, 24)]
    batched = batch_document_entropy(tiny_lm, documents, batch_size=3)
    for document, got in zip(documents, batched, strict=True):
        assert got.shape == (len(document),)
        np.testing.assert_allclose(
            got, reference_entropy(tiny_lm, document), rtol=1e-4, atol=1e-5, equal_nan=True
        )


def test_long_document_is_scored_in_half_overlapping_windows(tiny_lm):
    ids = torch.randint(0, 97, (150,)).tolist()
    got = document_entropy(tiny_lm, ids, max_length=64)
    assert got.shape == (150,) and np.isfinite(got[1:]).all()
    # The first window is exact; a later position equals the reference over the window that scored it.
    np.testing.assert_allclose(got[1:64], reference_entropy(tiny_lm, ids[:64])[1:], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got[64:96], reference_entropy(tiny_lm, ids[32:96])[32:], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        got[96:128], reference_entropy(tiny_lm, ids[64:128])[32:], rtol=1e-4, atol=1e-5
    )
    # The batched path routes long documents through the same windows.
    np.testing.assert_array_equal(batch_document_entropy(tiny_lm, [ids], max_length=64)[0], got)


def test_high_entropy_threshold():
    entropy = np.array([np.nan, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 9.0])
    assert high_entropy_positions(entropy, alpha=2.0).tolist() == [9]
    values = entropy[1:]
    assert 9.0 > values.mean() + 2 * values.std()  # the threshold uses the finite values only
    assert high_entropy_positions(entropy, alpha=3.0).tolist() == []  # 9 < mean + 3 std
    assert high_entropy_positions(np.full(6, 2.0)).tolist() == []  # constant entropy: nothing stands out
    assert high_entropy_positions(np.array([np.nan, 3.0])).tolist() == []  # fewer than two values
    assert high_entropy_positions(np.array([])).tolist() == []
    spread = np.array([np.nan, 0.0, 0.0, 10.0, 0.0, 0.0, 10.0])
    assert high_entropy_positions(spread, alpha=0.5).tolist() == [3, 6]
