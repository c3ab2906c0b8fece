from types import SimpleNamespace

import datasets
import numpy as np
import pytest
import torch
from scoring_helpers import (
    context_entropy,
    document_entropy,
    encode_document,
    roots_context_entropy,
    verification_row,
)
from tiny_models import tiny_llama
from transformers import LlamaForCausalLM

from hf_entropylong.models import EMBEDDED_LM, load_causal_lm, load_tokenizer
from hf_entropylong.stages.context_scores import (
    RootCandidates,
    padded_batches,
    plan_sequences,
    roots_context_scores,
    verification_plan,
)
from hf_entropylong.stages.token_scores import document_scores
from hf_entropylong.stages.verify import VerifySettings, delta_i, is_kept, verify_candidates


@pytest.fixture(scope="module")
def smollm():
    return load_causal_lm(EMBEDDED_LM, dtype="float32", device="cpu"), load_tokenizer(EMBEDDED_LM)


def direct_entropy(model, ids: list[int], index: int) -> float:
    """Entropy of the prediction of ids[index] from a full forward over the whole sequence, in float64."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, index - 1].double()
    log_probs = torch.log_softmax(logits, -1)
    return float(-(log_probs.exp() * log_probs).sum())


def first_token_of(tokenizer, root_ids: list[int], word: str) -> int:
    for t in range(1, len(root_ids)):
        if tokenizer.decode(root_ids[t]).strip() and word.startswith(tokenizer.decode(root_ids[t]).strip()):
            return t
    raise AssertionError(f"{word!r} not in the root")


def test_a_context_that_holds_the_continuation_passes_and_an_unrelated_one_fails(smollm):
    model, tokenizer = smollm
    root = "The secret code for the vault is 7391, and the guard who keeps it is called Marwick Feldane."
    root_ids = encode_document(tokenizer, root)
    position = first_token_of(tokenizer, root_ids, "7391")
    baseline = document_entropy(model, root_ids)[position]
    assert baseline > 1.0  # the model cannot know the code
    helpful = encode_document(tokenizer, "Vault records: the secret code for the vault is 7391.")
    unrelated = encode_document(tokenizer, "Violins have four strings tuned in perfect fifths.")
    with_helpful, with_unrelated = context_entropy(
        model, [helpful, unrelated], root_ids, [[position], [position]]
    )
    assert delta_i(baseline, with_helpful[0]) >= 0.4
    assert delta_i(baseline, with_unrelated[0]) < 0.4


def test_context_entropy_equals_a_direct_computation(smollm):
    model, tokenizer = smollm
    root_ids = encode_document(
        tokenizer, "Tobias Grennick kept the ledger of tolls in his counting house on Wharf Street."
    )
    contexts = [
        encode_document(tokenizer, "Grennick was a merchant of Calder Bay."),
        encode_document(tokenizer, "A ledger is a book of accounts, and a toll is a fee for passage."),
        encode_document(tokenizer, "Wharf Street runs along the harbour."),
    ]
    positions = [[2, 5, 9], [7], [12, 3]]
    got = context_entropy(model, contexts, root_ids, positions, batch_size=2)
    for context, wanted, values in zip(contexts, positions, got, strict=True):
        assert values.shape == (len(wanted),)
        for p, value in zip(wanted, values, strict=True):
            assert value == pytest.approx(
                direct_entropy(model, context + root_ids, len(context) + p), rel=1e-3, abs=1e-4
            )


def test_truncation_keeps_the_root_prefix_and_the_end_of_the_context():
    model = small_llama(window=32)
    context = torch.randint(0, 50, (40,)).tolist()  # longer than the whole window
    root = torch.randint(0, 50, (60,)).tolist()
    positions = [5, 20, 50]
    got = context_entropy(model, [context], root, [positions], max_length=32)[0]
    # p=5: the context keeps its last 27 tokens; p=20: its last 16 (half the window); p=50: 16 and the 16
    # root tokens before p. Positions that cannot share one window are verified in separate sequences.
    assert len({round(float(v), 3) for v in got}) == 3
    assert (
        abs(got[0] - direct_entropy(model, context[-16:] + root[4:5], 16 + 1)) > 1e-3
    )  # the context matters
    assert got[0] == pytest.approx(direct_entropy(model, context[-27:] + root[:5], 27 + 5), rel=1e-4)
    assert got[1] == pytest.approx(direct_entropy(model, context[-16:] + root[4:20], 16 + 16), rel=1e-4)
    assert got[2] == pytest.approx(direct_entropy(model, context[-16:] + root[34:50], 16 + 16), rel=1e-4)


def test_delta_i():
    np.testing.assert_allclose(
        delta_i(np.array([2.0, 4.0, 0.0]), np.array([1.0, 5.0, 0.3])), [0.5, -0.25, 0.0]
    )
    assert delta_i(5.0, 1.0) == pytest.approx(0.8)


def small_llama(window: int = 64) -> LlamaForCausalLM:
    """Vocab 50, large weights: predictions that depend on the context."""
    return tiny_llama(
        vocab_size=50,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=window,
        initializer_range=0.5,
    )


def test_a_made_up_name_and_number_are_verified_in_one_forward(smollm):
    model, tokenizer = smollm
    root = "The secret code for the vault is 7391, and the guard who keeps it is called Marwick Feldane."
    root_ids = encode_document(tokenizer, root)
    digit, name = first_token_of(tokenizer, root_ids, "391"), first_token_of(tokenizer, root_ids, "Marwick")
    baseline = document_entropy(model, root_ids)[[digit, name]]
    assert (baseline > 2.0).all()
    helpful = encode_document(tokenizer, "Vault records: code 7391. The vault guard is Marwick Feldane.")
    unrelated = encode_document(tokenizer, "Violins have four strings tuned in perfect fifths.")
    got = context_entropy(model, [unrelated, helpful], root_ids, [[digit, name], [name, digit]], batch_size=1)
    assert (delta_i(baseline, got[0]) < 0.4).all()
    assert (
        delta_i(baseline[::-1], got[1]) >= 0.4
    ).all()  # aligned with the order the positions were given in


def test_sequences_stop_at_the_last_position_and_the_head_sees_only_verified_rows():
    model = small_llama()
    lengths, head_rows = [], []
    model.model.register_forward_pre_hook(
        lambda _, args, kwargs: lengths.append(kwargs["input_ids"].shape), with_kwargs=True
    )
    model.lm_head.register_forward_pre_hook(lambda _, args: head_rows.append(args[0].shape[0]))
    context_entropy(model, [[1, 2, 3]], [4, 5, 6, 7], [[1]])  # the first call checks the head once
    lengths.clear(), head_rows.clear()
    root = torch.randint(0, 50, (40,)).tolist()
    contexts = [torch.randint(0, 50, (n,)).tolist() for n in (5, 9, 3)]
    context_entropy(model, contexts, root, [[3, 30, 12], [7], [30, 30]], batch_size=8)
    # Sequences of 9 + 7, 3 + 30 and 5 + 30 tokens: padding the first to 35 would waste over 10%, so it runs alone.
    assert lengths == [torch.Size([1, 9 + 7]), torch.Size([2, 5 + 30])]
    assert head_rows == [1, 3 + 1]  # one row per distinct (candidate, position)


def test_each_distinct_candidate_runs_once_and_batching_changes_nothing():
    model = small_llama()
    root = torch.randint(0, 50, (30,)).tolist()
    contexts = [torch.randint(0, 50, (n,)).tolist() for n in (4, 11, 7, 2)]
    positions = [[5, 20], [1, 29, 8], [0, 14], [22]]
    one_by_one = [context_entropy(model, [c], root, [p])[0] for c, p in zip(contexts, positions, strict=True)]
    for batch_size in (1, 3, 8):
        got = context_entropy(model, contexts, root, positions, batch_size=batch_size)
        for a, b in zip(got, one_by_one, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    rows = []
    model.model.register_forward_pre_hook(
        lambda _, args, kwargs: rows.append(len(kwargs["input_ids"])), with_kwargs=True
    )
    twice = context_entropy(model, [contexts[1], contexts[1]], root, [[1, 29], [8]], batch_size=8)
    assert rows == [1]  # the same candidate given twice is one sequence
    np.testing.assert_allclose(np.concatenate(twice), one_by_one[1], rtol=1e-5, atol=1e-6)


def test_bad_positions_are_refused():
    model = small_llama()
    with pytest.raises(ValueError, match="position 9"):
        context_entropy(model, [[1, 2]], [3, 4, 5], [[9]])
    with pytest.raises(ValueError, match="position 0"):
        context_entropy(model, [[]], [3, 4, 5], [[0]])
    with pytest.raises(ValueError, match="2 contexts but 1"):
        context_entropy(model, [[1], [2]], [3, 4, 5], [[1]])


@pytest.mark.parametrize("batch_size", [1, 4, 64])
def test_padded_batches_bound_padding_and_size(batch_size):
    lengths = torch.randint(1, 500, (200,), generator=torch.Generator().manual_seed(0)).tolist()
    batches = padded_batches(lengths, batch_size)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    assert max(len(batch) for batch in batches) <= batch_size
    for batch in batches:
        assert len(batch) * max(lengths[i] for i in batch) <= 1.1 * sum(lengths[i] for i in batch)
    if batch_size > 1:
        assert len(batches) < len(lengths)  # similar lengths still share forwards


def test_decisions_of_many_roots_at_once_equal_one_pair_at_a_time():
    """The packed-by-length computation against one forward per (position, candidate), in CPU float32."""
    model = small_llama()
    generator = torch.Generator().manual_seed(1)
    requests = []
    for root_length in (20, 30, 45):  # + contexts up to 15 tokens: inside the window of 64
        root = torch.randint(0, 50, (root_length,), generator=generator).tolist()
        contexts = [torch.randint(0, 50, (n,), generator=generator).tolist() for n in (3, 8, 2, 15)]
        positions = [torch.randint(1, root_length, (3,), generator=generator).tolist() for _ in contexts]
        requests.append(RootCandidates(root, contexts, positions))
    got = roots_context_entropy(model, requests, batch_size=8)
    decisions, expected_decisions = [], []
    for request, per_candidate in zip(requests, got, strict=True):
        baseline = document_entropy(model, request.root_ids)
        for context, wanted, values in zip(
            request.context_ids, request.positions, per_candidate, strict=True
        ):
            for p, value in zip(wanted, values, strict=True):
                with torch.inference_mode():
                    logits = model(torch.tensor([context + request.root_ids[:p]])).logits[0, -1]
                one_pair = float(-(logits.log_softmax(-1).exp() * logits.log_softmax(-1)).sum())
                assert value == pytest.approx(one_pair, rel=1e-5, abs=1e-6)
                decisions.append(bool(delta_i(baseline[p], value) >= 0.4))
                expected_decisions.append(bool(delta_i(baseline[p], one_pair) >= 0.4))
    assert decisions == expected_decisions
    assert any(decisions) and not all(decisions)  # the check separates something


def test_a_local_root_window_shares_sequences_between_close_positions():
    context, root = [1, 2, 3], list(range(10, 60))
    sequences = plan_sequences(context, root, [40, 12, 10], window=64, root_window=4)
    # 10 and 12 share C + root[6:12] (joining adds 2 tokens, a new sequence 7); 40 is far: C + root[36:40].
    assert [s.input_ids for s in sequences] == [context + root[6:12], context + root[36:40]]
    assert [s.rows for s in sequences] == [{10: 3 + 4 - 1, 12: 3 + 6 - 1}, {40: 3 + 4 - 1}]
    exact = plan_sequences(context, root, [40, 12, 10], window=64)
    assert [s.input_ids for s in exact] == [context + root[:40]]  # one sequence up to the last position


def test_a_local_root_window_predicts_from_the_window_alone():
    model = small_llama()
    root = torch.randint(0, 50, (50,), generator=torch.Generator().manual_seed(2)).tolist()
    context = [7, 8, 9, 10]
    got = context_entropy(model, [context], root, [[30, 45]], root_window=8)[0]
    for p, value in zip([30, 45], got, strict=True):
        assert value == pytest.approx(direct_entropy(model, context + root[p - 8 : p + 1], 4 + 8), rel=1e-4)


def test_verify_root_window_must_be_positive():
    with pytest.raises(ValueError, match="verify_root_window"):
        VerifySettings(verify_root_window=0)


def test_verify_criterion_is_checked():
    with pytest.raises(ValueError, match="verify_criterion"):
        VerifySettings(verify_criterion="target")


def test_target_logprob_with_context_equals_a_plain_forward():
    """At every gathered row, in shared sequences, truncated windows and local root windows alike."""
    model = small_llama(window=32)
    generator = torch.Generator().manual_seed(3)
    root = torch.randint(0, 50, (45,), generator=generator).tolist()
    contexts = [torch.randint(0, 50, (n,), generator=generator).tolist() for n in (3, 12, 40)]
    positions = [[1, 9, 30, 44], [5, 20], [2, 40]]
    for root_window in (None, 6):
        requests = [
            RootCandidates(root, contexts, positions),
            RootCandidates(root[:20], contexts[:1], [[19, 4]]),
        ]
        got = roots_context_scores(model, requests, batch_size=3, max_length=32, root_window=root_window)
        entropies = roots_context_entropy(
            model, requests, batch_size=3, max_length=32, root_window=root_window
        )
        sequences, owners = verification_plan(requests, 32, root_window)
        for request, per_candidate, per_candidate_entropy, candidate_owners in zip(
            requests, got, entropies, owners, strict=True
        ):
            for wanted, scores, entropy, owner in zip(
                request.positions, per_candidate, per_candidate_entropy, candidate_owners, strict=True
            ):
                np.testing.assert_array_equal(scores.entropy, entropy)
                for p, logprob in zip(wanted, scores.logprob, strict=True):
                    sequence = next(sequences[i] for i in owner if p in sequences[i].rows)
                    assert sequence.targets[p] == request.root_ids[p]
                    with torch.inference_mode():
                        logits = model(torch.tensor([sequence.input_ids[: sequence.rows[p] + 1]])).logits[
                            0, -1
                        ]
                    expected = float(logits.double().log_softmax(-1)[request.root_ids[p]])
                    assert logprob == pytest.approx(expected, rel=1e-4, abs=1e-5)
    # Where the candidate and the root prefix fit the window: the prediction of root[p] after context + root[:p].
    with torch.inference_mode():
        logits = model(torch.tensor([contexts[0] + root[:9]])).logits[0, -1]
    expected = float(logits.double().log_softmax(-1)[root[9]])
    got = roots_context_scores(model, [RootCandidates(root, contexts[:1], [[9]])], max_length=32)[0][0]
    assert got.logprob[0] == pytest.approx(expected, rel=1e-4, abs=1e-5)


def test_entropy_and_target_rejects_a_confidently_wrong_context():
    """Entropy falls by 70% but the actual token gets less likely: only the paper's rule keeps the pair."""
    default, strict = VerifySettings(), VerifySettings(verify_criterion="entropy_and_target")
    delta, gain = 0.7, np.log(0.003) - np.log(0.02)
    assert is_kept(delta, gain, default) and not is_kept(delta, gain, strict)
    assert is_kept(delta, 1.2, strict) and not is_kept(0.3, 1.2, strict)  # both conditions are needed
    assert not is_kept(delta, 0.0, strict)  # an unchanged probability does not rise
    generator = np.random.default_rng(0)
    deltas, gains = generator.uniform(-1, 1, 1000), generator.normal(0, 1, 1000)
    loose, stricter = is_kept(deltas, gains, default), is_kept(deltas, gains, strict)
    assert (
        (loose == (deltas >= 0.4)).all()
        and not (stricter & ~loose).any()
        and 0 < stricter.sum() < loose.sum()
    )


VAULT = "The secret code for the vault is 7391, and the guard who keeps it is called Marwick Feldane."
VAULT_CONTEXTS = [
    "Vault records: the secret code for the vault is 4826.",  # a wrong code: the model becomes sure of a 4
    "Vault records: code 7391. The vault guard is Marwick Feldane.",
    "Violins have four strings tuned in perfect fifths.",
]


def vault_batch(tokenizer, model, positions: list[str], contexts: list[int]) -> dict:
    """The vault root, its positions at the first token of each of `positions` (scored as the entropy stage does),
    every context of `contexts` retrieved for every position."""
    root_ids = encode_document(tokenizer, VAULT)
    indices = [first_token_of(tokenizer, root_ids, word) for word in positions]
    return verification_row(VAULT, document_scores(model, root_ids), indices, contexts)


def vault_inputs(model, tokenizer) -> SimpleNamespace:
    """The verification stage's inputs, with `VAULT_CONTEXTS` as the corpus."""
    corpus = datasets.Dataset.from_dict({"text": VAULT_CONTEXTS})
    return SimpleNamespace(tokenizer=tokenizer, lm=model, lm_window=None, corpus=corpus)


def test_the_stricter_criterion_keeps_a_subset_of_the_pairs(smollm):
    model, tokenizer = smollm
    inputs = vault_inputs(model, tokenizer)
    batch = vault_batch(tokenizer, model, ["7391", "391", "Marwick", "keeps"], [0, 1, 2])
    default = verify_candidates(batch, VerifySettings(), inputs)
    strict = verify_candidates(batch, VerifySettings(verify_criterion="entropy_and_target"), inputs)
    baseline = {p["token_index"]: p["target_logprob"] for p in batch["positions"][0]}
    for loose, tight in zip(default["candidates"][0], strict["candidates"][0], strict=True):
        for name in ("entropy_with_context", "target_logprob_with_context", "delta_i"):
            assert loose[name] == pytest.approx(tight[name], rel=1e-6)
        assert loose["kept"] == (loose["delta_i"] >= 0.4)
        rises = loose["target_logprob_with_context"] > baseline[loose["token_index"]]
        assert tight["kept"] == (loose["kept"] and rises)
    kept = {(c["token_index"], c["corpus_index"]) for c in default["candidates"][0] if c["kept"]}
    strictly_kept = {(c["token_index"], c["corpus_index"]) for c in strict["candidates"][0] if c["kept"]}
    assert strictly_kept < kept
    # The wrong code lowers the entropy of the code's first digit but makes the true digit less likely.
    digit = batch["positions"][0][0]["token_index"]
    assert (digit, 0) in kept and (digit, 0) not in strictly_kept
    # Verified contexts hold the pairs each rule kept.
    for out, pairs in ((default, kept), (strict, strictly_kept)):
        assert {(t, c["corpus_index"]) for c in out["contexts"][0] for t in c["token_indices"]} == pairs


def test_a_root_whose_only_pairs_the_stricter_criterion_rejects_has_no_verified_context(smollm):
    model, tokenizer = smollm
    inputs = vault_inputs(model, tokenizer)
    batch = vault_batch(tokenizer, model, ["7391"], [0])
    default = verify_candidates(batch, VerifySettings(), inputs)
    strict = verify_candidates(batch, VerifySettings(verify_criterion="entropy_and_target"), inputs)
    (candidate,) = default["candidates"][0]
    assert (
        candidate["delta_i"] >= 0.4
        and candidate["target_logprob_with_context"] < batch["positions"][0][0]["target_logprob"]
    )
    assert default["status"] == ["ok"] and len(default["contexts"][0]) == 1
    assert strict["status"] == ["no_verified_context"] and strict["contexts"] == [[]]
