from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scoring_helpers import batch_document_entropy, document_entropy, encode_document, next_token_entropy
from tiny_models import tiny_llama
from transformers import LlamaConfig, LlamaForCausalLM

from hf_entropylong.models import EMBEDDED_LM, load_tokenizer
from hf_entropylong.stages.entropy import (
    ENTROPY_HISTOGRAM_EDGES,
    EntropySettings,
    high_entropy_positions,
    score_roots,
)
from hf_entropylong.stages.token_scores import (
    batch_document_scores,
    document_scores,
    entropy_and_logprob_from_logits,
    next_token_scores,
)


@pytest.fixture(scope="module")
def tiny_lm():
    return tiny_llama()


def reference_entropy(model, ids: list[int]) -> np.ndarray:
    """Full logits, log-softmax in float64: H of the prediction of token t at index t."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double()
    log_probs = torch.log_softmax(logits, -1)
    out = np.full(len(ids), np.nan)
    out[1:] = (-(log_probs.exp() * log_probs).sum(-1))[:-1].numpy()
    return out


def reference_logprob(model, ids: list[int]) -> np.ndarray:
    """Full logits, log-softmax in float64: log p(ids[t] | ids[:t]) at index t."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double()
    out = np.full(len(ids), np.nan)
    out[1:] = torch.log_softmax(logits, -1)[torch.arange(len(ids) - 1), ids[1:]].numpy()
    return out


def test_entropy_and_logprob_from_logits_match_the_definition():
    logits = torch.randn(3, 11, dtype=torch.bfloat16)
    targets = torch.randint(0, 11, (3,))
    probs = torch.softmax(logits.double(), -1)
    entropy, logprob = entropy_and_logprob_from_logits(logits, targets)
    assert torch.allclose(entropy.double(), -(probs * probs.log()).sum(-1), atol=1e-5)
    assert torch.allclose(logprob.double(), probs.log()[torch.arange(3), targets], atol=1e-5)
    assert entropy.dtype == logprob.dtype == torch.float32
    uniform, _ = entropy_and_logprob_from_logits(torch.zeros(5), torch.tensor(0))
    assert uniform.item() == pytest.approx(np.log(5), rel=1e-6)


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


def test_padded_positions_are_nan_and_left_padding_is_refused(tiny_lm):
    ids = torch.randint(0, 97, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    got = next_token_entropy(tiny_lm, ids, mask)
    assert (
        torch.isnan(got[1, 6:]).all()
        and torch.isfinite(got[1, 1:6]).all()
        and torch.isfinite(got[0, 1:]).all()
    )
    np.testing.assert_allclose(got[1, :6].numpy(), reference_entropy(tiny_lm, ids[1, :6].tolist()), rtol=1e-5)
    with pytest.raises(ValueError, match="right padding"):
        next_token_entropy(tiny_lm, ids, mask.flip(-1))


def test_odd_window_scores_every_position_once_with_half_a_window_of_context(tiny_lm):
    ids = torch.randint(0, 97, (150,)).tolist()
    got = document_entropy(tiny_lm, ids, max_length=63, chunk_size=5)
    # W = 63, stride 31: windows start at 0, 31, 62, 93; each scores from where the previous one stopped.
    expected = np.concatenate(
        [
            reference_entropy(tiny_lm, ids[0:63]),
            reference_entropy(tiny_lm, ids[31:94])[32:],
            reference_entropy(tiny_lm, ids[62:125])[32:],
            reference_entropy(tiny_lm, ids[93:150])[32:],
        ]
    )
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5, equal_nan=True)
    # A document of exactly one window is scored in one piece.
    np.testing.assert_allclose(
        document_entropy(tiny_lm, ids[:63], max_length=63),
        reference_entropy(tiny_lm, ids[:63]),
        rtol=1e-4,
        atol=1e-5,
    )


def test_batch_keeps_input_order_with_empty_and_single_token_documents(tiny_lm):
    documents = [[5, 6, 7], [], [9], list(range(20))]
    got = batch_document_entropy(tiny_lm, documents, batch_size=2)
    assert [len(g) for g in got] == [3, 0, 1, 20] and all(g.dtype == np.float32 for g in got)
    assert np.isnan(got[2]).all()
    np.testing.assert_allclose(
        got[3], reference_entropy(tiny_lm, documents[3]), rtol=1e-4, atol=1e-5, equal_nan=True
    )


def test_generic_causal_lms_match_their_own_logits():
    from transformers import Gemma2Config, Gemma2ForCausalLM, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=61, n_embd=32, n_layer=2, n_head=4, n_positions=64)).eval()
    gemma2 = Gemma2ForCausalLM(  # logits soft-capped after the head
        Gemma2Config(
            vocab_size=61,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
            max_position_embeddings=64,
            final_logit_softcapping=0.5,
        )
    ).eval()
    ids = torch.randint(0, 61, (30,)).tolist()
    for model in (gpt2, gemma2):
        got = batch_document_entropy(model, [ids, ids[:11]], chunk_size=7)
        np.testing.assert_allclose(
            got[0], reference_entropy(model, ids), rtol=1e-4, atol=1e-5, equal_nan=True
        )
        np.testing.assert_allclose(
            got[1], reference_entropy(model, ids[:11]), rtol=1e-4, atol=1e-5, equal_nan=True
        )


def test_unknown_logit_post_processing_is_refused():
    class ScaledLogits(LlamaForCausalLM):
        def forward(self, *args, **kwargs):
            out = super().forward(*args, **kwargs)
            out.logits = out.logits * 3.0
            return out

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4
    )
    with pytest.raises(NotImplementedError, match="post-processing"):
        next_token_entropy(ScaledLogits(config).eval(), torch.randint(0, 97, (1, 8)))


def test_high_entropy_edge_cases():
    assert high_entropy_positions(np.full(7, 0.1)).tolist() == []  # constant, not exactly representable
    assert high_entropy_positions(np.full(4, np.nan)).tolist() == []
    assert high_entropy_positions(np.array([np.nan])).tolist() == []
    assert high_entropy_positions(np.array([np.nan, 1.0, 5.0]), alpha=0.0).tolist() == [2]
    with_inf = np.array([np.nan, 1.0, 1.0, 1.0, 1.0, np.inf, 1.0, 1.0, 1.0, 1.0, 9.0])
    assert high_entropy_positions(with_inf).tolist() == [10]  # inf is not finite: ignored like NaN
    picked = high_entropy_positions(np.array([np.nan, 1.0, 2.0, 3.0]), alpha=-10.0)
    assert picked.tolist() == [1, 2, 3] and picked.dtype == np.int64


ROOTS = [
    "The Velmora Accord was signed in 1847 by the merchant Tobias Grennick and the harbour master of Calder Bay.",
    "A volcano is a rupture in the crust of a planet that allows hot lava and gases to escape.",
    "Hello.",
    "The river flows past the old mill at the edge of the village. " * 8,  # longer than max_seq_length
]


@pytest.fixture(scope="module")
def stage_inputs():
    """The entropy stage's inputs: the embedded tokenizer and a tiny LM over its vocabulary."""
    tokenizer = load_tokenizer(EMBEDDED_LM)
    lm = tiny_llama(vocab_size=len(tokenizer), max_position_embeddings=128, initializer_range=0.5)
    return SimpleNamespace(tokenizer=tokenizer, lm=lm, lm_window=128, max_seq_length=100)


def test_entropy_histogram_counts_the_entropies_of_the_statistics(stage_inputs):
    settings = EntropySettings(min_left_context=4)
    out = score_roots({"text": ROOTS}, settings, stage_inputs)
    assert out["status"][3] == "root_too_long" and out["entropy_histogram"][3] == []
    for text, histogram, mean, std in zip(
        ROOTS[:3], out["entropy_histogram"], out["entropy_mean"], out["entropy_std"], strict=False
    ):
        ids = encode_document(stage_inputs.tokenizer, text)
        entropy = document_entropy(stage_inputs.lm, ids).astype(np.float64)
        entropy[-1] = np.nan  # the closing EOS is a special token
        entropy[: settings.min_left_context] = np.nan  # no BOS: the first text tokens are the first tokens
        finite = entropy[np.isfinite(entropy)]
        assert len(histogram) == len(ENTROPY_HISTOGRAM_EDGES) - 1 == 48
        assert sum(histogram) == len(finite) == max(0, len(ids) - 1 - settings.min_left_context)
        assert histogram == np.histogram(finite, bins=ENTROPY_HISTOGRAM_EDGES)[0].tolist()
        if len(finite):
            assert mean == pytest.approx(finite.mean(), rel=1e-4)
            assert std == pytest.approx(finite.std(), rel=1e-4)
    assert sum(out["entropy_histogram"][2]) == 0  # "Hello.": every token is masked


def test_entropy_histogram_counts_values_above_the_last_edge_in_the_last_bin():
    from hf_entropylong.stages.entropy import entropy_histogram

    counts = entropy_histogram(np.array([np.nan, 0.0, 0.1, 11.9, 12.0, 30.0, np.inf]))
    assert counts[0] == 2 and counts[-1] == 3 and sum(counts) == 5


def test_target_logprob_is_the_log_softmax_of_the_actual_next_token():
    tiny_lm = tiny_llama(initializer_range=0.5)  # peaked predictions: log-probabilities far apart
    ids = torch.randint(0, 97, (2, 30))
    mask = torch.ones_like(ids)
    mask[1, 21:] = 0
    scores = next_token_scores(tiny_lm, ids, mask, chunk_size=7)
    torch.testing.assert_close(scores.entropy, next_token_entropy(tiny_lm, ids, mask), equal_nan=True)
    np.testing.assert_allclose(
        scores.logprob[0].numpy(), reference_logprob(tiny_lm, ids[0].tolist()), rtol=1e-5
    )
    np.testing.assert_allclose(
        scores.logprob[1, :21].numpy(), reference_logprob(tiny_lm, ids[1, :21].tolist()), rtol=1e-5, atol=1e-6
    )
    assert torch.isnan(scores.logprob[1, 21:]).all() and torch.isnan(scores.logprob[:, 0]).all()
    # Batched with padding, and in windows for a document longer than the window.
    documents = [torch.randint(0, 97, (n,)).tolist() for n in (5, 31, 17, 150)]
    for document, got in zip(documents, batch_document_scores(tiny_lm, documents, batch_size=2), strict=True):
        expected = reference_logprob(tiny_lm, document[:64])  # the first window is exact
        np.testing.assert_allclose(got.logprob[:64], expected, rtol=1e-4, atol=1e-5, equal_nan=True)
        np.testing.assert_allclose(
            got.entropy, document_entropy(tiny_lm, document), rtol=1e-5, equal_nan=True
        )
    windowed = document_scores(tiny_lm, documents[3], max_length=64).logprob
    np.testing.assert_allclose(
        windowed[64:96], reference_logprob(tiny_lm, documents[3][32:96])[32:], rtol=1e-4, atol=1e-5
    )


def test_positions_record_the_target_logprob_of_their_token(stage_inputs):
    out = score_roots({"text": ROOTS[:2]}, EntropySettings(alpha=0.5), stage_inputs)
    assert all(out["positions"])
    for text, positions in zip(ROOTS, out["positions"], strict=False):
        ids = encode_document(stage_inputs.tokenizer, text)
        expected = reference_logprob(stage_inputs.lm, ids)
        for position in positions:
            assert position["target_logprob"] == pytest.approx(expected[position["token_index"]], abs=1e-4)
            assert position["target_logprob"] <= 0
