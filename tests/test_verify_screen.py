"""The verification screen (`verify_screen`): what it re-checks is decided exactly as without it, bit for bit."""

import math
from types import SimpleNamespace

import datasets
import numpy as np
import pytest
import torch
from scoring_helpers import encode_document, verification_row
from tiny_models import tiny_llama

from hf_entropylong.models import EMBEDDED_LM, load_causal_lm, load_tokenizer
from hf_entropylong.stages.context_scores import RootCandidates, roots_context_scores
from hf_entropylong.stages.screen import planned_tokens, screen_passages, worth_screening
from hf_entropylong.stages.token_scores import document_scores
from hf_entropylong.stages.verify import VerifySettings, cascade_scores, delta_i, verify_candidates


def random_requests(
    model, roots: int = 3, candidates: int = 4
) -> tuple[list[RootCandidates], list[list[np.ndarray]]]:
    """Roots of 150 random tokens, each with candidates of 6-20 tokens at 1-3 positions from token 40 on, and the
    entropy at each position with the root alone."""
    generator = torch.Generator().manual_seed(1)
    requests, baselines = [], []
    for _ in range(roots):
        root = torch.randint(0, 97, (150,), generator=generator).tolist()
        contexts = [
            torch.randint(0, 97, (int(n),), generator=generator).tolist()
            for n in torch.randint(6, 20, (candidates,), generator=generator)
        ]
        positions = [
            sorted(set(torch.randint(40, 150, (int(n),), generator=generator).tolist()))
            for n in torch.randint(1, 4, (candidates,), generator=generator)
        ]
        alone = document_scores(model, root).entropy
        requests.append(RootCandidates(root, contexts, positions))
        baselines.append([np.asarray(alone, dtype=np.float64)[p] for p in positions])
    return requests, baselines


@pytest.fixture(scope="module")
def tiny():
    return tiny_llama(max_position_embeddings=256, initializer_range=0.5)


@pytest.mark.parametrize(("screen_epsilon", "screen_context"), [(-5.0, None), (0.2, None), (0.2, 5)])
def test_every_candidate_re_checked_gets_the_exact_scores_bit_for_bit(tiny, screen_epsilon, screen_context):
    requests, baselines = random_requests(tiny)
    settings = VerifySettings(verify_screen=8, verify_screen_context=screen_context, verify_batch_size=1)
    settings.verify_screen_epsilon = (
        screen_epsilon  # -5: past the setting's check, a screen every candidate passes
    )
    exact_alone = roots_context_scores(tiny, requests, batch_size=1)
    windowed = roots_context_scores(tiny, requests, batch_size=1, root_window=8)
    cascade, screen = cascade_scores(tiny, requests, baselines, settings)
    dropped = 0
    for request, found, gains, exact, window, baseline in zip(
        requests, cascade, screen, exact_alone, windowed, baselines, strict=True
    ):
        assert worth_screening(request, 256, 8, screen_context) == [g is not None for g in gains]
        for scores, gain, alone, through_window, base in zip(
            found, gains, exact, window, baseline, strict=True
        ):
            if gain is not None and screen_context is None:  # the window's ΔI, against the whole-root entropy
                np.testing.assert_allclose(gain, delta_i(base, through_window.entropy), rtol=1e-5, atol=1e-6)
            passes = gain is None or (gain >= screen_epsilon).any()
            assert (scores is not None) == passes
            if scores is None:
                dropped += 1
                continue
            assert np.array_equal(scores.entropy, alone.entropy) and np.array_equal(
                scores.logprob, alone.logprob
            )
    if screen_epsilon == -5.0:
        assert dropped == 0  # a screen ΔI of -5 is never reached by a lower entropy
    if screen_epsilon == 0.2:
        assert dropped > 0  # the random contexts explain nothing: most are dropped


def test_without_a_screen_every_candidate_is_verified_exactly(tiny):
    requests, baselines = random_requests(tiny, roots=2)
    found, screen = cascade_scores(tiny, requests, baselines, VerifySettings(verify_batch_size=3))
    expected = roots_context_scores(tiny, requests, batch_size=3)
    for per_root, gains, exact in zip(found, screen, expected, strict=True):
        assert gains == [None] * len(per_root)
        for scores, alone in zip(per_root, exact, strict=True):
            assert np.array_equal(scores.entropy, alone.entropy)


def test_the_screen_reads_the_passage_sharing_the_roots_rare_tokens_near_each_position():
    common, rare_a, rare_b = 1, 500, 600
    root = [common] * 100
    root[30], root[80] = rare_a, rare_b  # each occurs once in the root: the heaviest tokens
    candidate = [common] * 10 + [rare_a] + [common] * 19 + [rare_b] + [common] * 9  # 40 tokens
    request = RootCandidates(root, [candidate, [7, 8, 9]], [[35, 82, 90], [60]])
    passages, where = screen_passages(request, 8)
    # around 35 only rare_a is near, around 82 and 90 rare_b: two passages, each holding its token
    first, second, third = (passages.context_ids[k] for k, _ in where[0])
    assert rare_a in first and rare_b in second and second == third
    assert all(len(passage) == 8 for passage in (first, second))
    assert passages.context_ids[where[1][0][0]] == [7, 8, 9]  # shorter than the passage: whole
    for wanted, landing in zip(request.positions, where, strict=True):  # every position lands once, in order
        assert [passages.positions[k][j] for k, j in landing] == wanted
    unchanged, identity = screen_passages(request, None)
    assert unchanged is request and identity == [[(0, 0), (0, 1), (0, 2)], [(1, 0)]]
    # the screen's cost: 40 + 4 at 35, then 82 and 90 joined (96 > half of 40 + 90) against 8 + 4, then 8 + 4 + 8
    assert worth_screening(request, 512, 4) == [False, True]
    assert worth_screening(request, 512, 4, 8) == [True, True]


def test_a_candidate_is_screened_only_when_its_screen_costs_at_most_half_its_exact_sequences():
    root = list(range(300))
    request = RootCandidates(root, [[1] * 10, [2] * 10, [3] * 10], [[12], [250], [60, 120, 180, 240, 290]])
    exact, screen = planned_tokens(request, 512), planned_tokens(request, 512, 16)
    assert exact == [10 + 12, 10 + 250, 10 + 290]
    assert screen == [10 + 12, 10 + 16, 5 * (10 + 16)]  # at 12 the window holds the whole prefix
    assert worth_screening(request, 512, 16) == [False, True, True]  # 22 > 11, 26 <= 130, 130 <= 150


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"verify_screen": 0}, "verify_screen must be positive"),
        ({"verify_screen": 64, "verify_screen_context": 0}, "verify_screen_context must be positive"),
        (
            {"verify_screen": 64, "verify_screen_epsilon": 0.5},
            "verify_screen_epsilon must be at most epsilon",
        ),
        ({"verify_screen": 64, "verify_screen_epsilon": math.nan}, "verify_screen_epsilon"),
        ({"verify_screen": 64, "verify_root_window": 128}, "cannot both be set"),
    ],
)
def test_screen_settings_are_checked(overrides, message):
    with pytest.raises(ValueError, match=message):
        VerifySettings(**overrides)


def test_the_screens_threshold_binds_only_a_screened_build():
    assert VerifySettings(epsilon=0.2).verify_screen is None  # the default threshold 0.3 > ε is not read
    with pytest.raises(ValueError, match="at most epsilon"):
        VerifySettings(epsilon=0.2, verify_screen=64)


FILLER = (
    "The harbour town kept its old customs long after the railway came. Fishermen mended their nets on the quay "
    "each morning, the bakers opened before dawn, and the church bell marked the hours for everyone who worked "
    "along the water. Visitors came in summer to walk the cliffs and buy smoked fish from the stalls by the "
    "lighthouse, and in winter the town was quiet again. The school stood at the top of the hill, beside the old "
    "mill, and its teacher rang a hand bell at nine. On market days farmers drove their carts down from the "
    "valley with cheese, apples and wool, and the inn by the bridge served soup to anyone who had walked far."
)
ROOT = (
    FILLER + " The secret code for the vault is 7391, and the guard who keeps it is called Marwick Feldane."
)
CORPUS = [
    "Vault records: the secret code for the vault is 7391, and its guard is called Marwick Feldane.",
    "Violins have four strings tuned in perfect fifths.",
]


def test_the_screen_drops_an_unrelated_document_and_keeps_the_exact_decision_on_the_one_that_explains():
    model, tokenizer = load_causal_lm(EMBEDDED_LM, dtype="float32", device="cpu"), load_tokenizer(EMBEDDED_LM)
    root_ids = encode_document(tokenizer, ROOT)
    scores = document_scores(model, root_ids)
    words = [tokenizer.decode(t).strip() for t in root_ids]
    indices = [t for t in range(len(root_ids)) if words[t] in ("7", "Mar") and t > 60]
    assert len(indices) == 2, words
    batch = verification_row(ROOT, scores, indices, [0, 1])
    inputs = SimpleNamespace(
        tokenizer=tokenizer, lm=model, lm_window=None, corpus=datasets.Dataset.from_dict({"text": CORPUS})
    )
    exact = verify_candidates(batch, VerifySettings(verify_batch_size=1), inputs)
    cascade = verify_candidates(
        batch, VerifySettings(verify_screen=32, verify_screen_epsilon=0.3, verify_batch_size=1), inputs
    )
    by_pair = {(c["corpus_index"], c["token_index"]): c for c in cascade["candidates"][0]}
    for alone in exact["candidates"][0]:
        screened = by_pair[(alone["corpus_index"], alone["token_index"])]
        assert math.isnan(alone["screen_delta_i"]) and not math.isnan(screened["screen_delta_i"])
        if alone["corpus_index"] == 0:  # it explains the code and the name: re-checked, the exact values
            for name in ("entropy_with_context", "target_logprob_with_context", "delta_i", "kept"):
                assert screened[name] == alone[name]
        else:  # the violins explain nothing: screened out, no exact values, not kept
            assert screened["screen_delta_i"] < 0.3 and not alone["kept"] and not screened["kept"]
            assert math.isnan(screened["delta_i"]) and math.isnan(screened["entropy_with_context"])
    assert max(c["screen_delta_i"] for c in cascade["candidates"][0] if c["corpus_index"] == 0) >= 0.3
    assert cascade["contexts"] == exact["contexts"] and [c["corpus_index"] for c in exact["contexts"][0]] == [
        0
    ]
    assert cascade["status"] == exact["status"] == ["ok"]


def test_the_card_says_when_verification_was_screened(tmp_path):
    from test_cards import EMBEDDED, make_counts

    from hf_entropylong.builder import BuildConfig
    from hf_entropylong.publish.card import render_dataset_card

    files = {"default": "default/*.parquet"}
    screened = BuildConfig(
        **EMBEDDED,
        verify_screen=256,
        verify_screen_context=None,
        verify_screen_epsilon=0.1,
        output_dir=str(tmp_path),
    )
    card = render_dataset_card(screened, make_counts(), files, "")
    assert "screened (`verify_screen: 256`)" in card and "ΔI ≥ 0.1\nthere were verified" in card
    assert "passage nearest the query" not in card
    cut = BuildConfig(**EMBEDDED, verify_screen=64, output_dir=str(tmp_path))  # the default passage
    assert "(and, of the\ndocument, its 128-token passage nearest the query)" in render_dataset_card(
        cut, make_counts(), files, ""
    )
    plain = render_dataset_card(BuildConfig(**EMBEDDED, output_dir=str(tmp_path)), make_counts(), files, "")
    assert "verify_screen" not in plain
