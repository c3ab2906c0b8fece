"""Attention spans: collation, the per-unit boundary (logits and loss), dataset validation, the SP guard."""

import pytest
import torch
from accelerate import ParallelismConfig
from accelerate.utils import DeepSpeedSequenceParallelConfig
from datasets import Dataset
from tiny_models import tiny_llama
from transformers import LlamaConfig

from hf_entropylong.train.spans import PackedCollator, check_parallelism, validate_packed_dataset
from hf_entropylong.train.varlen import VARLEN_ATTENTION

SPANS = [9, 14, 1, 6, 4]  # the last span is the padding tail


def packed_rows(n: int = 2) -> list[dict]:
    generator = torch.Generator().manual_seed(1)
    rows = []
    for _ in range(n):
        ids = torch.randint(1, 97, (sum(SPANS),), generator=generator).tolist()
        ids[-SPANS[-1] :] = [0] * SPANS[-1]
        rows.append({"input_ids": ids, "seq_lengths": SPANS, "num_padding_tokens": SPANS[-1]})
    return rows


def unit_slices(row: int = 0):
    start, offset = 0, row * sum(SPANS)
    for length in SPANS[:-1]:
        yield slice(offset + start, offset + start + length)
        start += length


def test_collator_layout():
    batch = PackedCollator(pad_token_id=0)(packed_rows())
    assert "attention_mask" not in batch
    assert batch["input_ids"].shape == (1, 2 * sum(SPANS))
    row = batch["position_ids"][0, : sum(SPANS)].tolist()
    assert row == [p for length in SPANS for p in range(length)]
    starts = [0, 9, 23, 24, 30]
    assert batch["cu_seq_lens_q"].tolist() == starts + [34, 43, 57, 58, 64, 68]
    labels = batch["labels"][0]
    for start in starts:  # the first token of a span is never a target
        assert labels[start] == -100
    assert (labels[30:34] == -100).all()  # padding tail
    assert (labels[1:9] == batch["input_ids"][0, 1:9]).all()


def test_padding_to_whole_blocks_keeps_every_unit():
    """`pad_to_multiple_of` (flex_attention's blocks) appends pad tokens as spans of their own, with no loss."""
    model = tiny_llama(max_position_embeddings=256, attn_implementation="sdpa")
    batch = PackedCollator(pad_token_id=0)(packed_rows())
    padded = PackedCollator(pad_token_id=0, pad_to_multiple_of=128)(packed_rows())
    length = batch["input_ids"].shape[1]
    assert padded["input_ids"].shape == (1, 128)
    assert (padded["position_ids"][0, length:] == 0).all() and (padded["labels"][0, length:] == -100).all()
    assert torch.equal(padded["labels"][0, :length], batch["labels"][0])
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=False).logits
        padded_logits = model(**{k: v for k, v in padded.items() if k != "labels"}, use_cache=False).logits
    torch.testing.assert_close(padded_logits[:, :length], logits, atol=1e-5, rtol=1e-5)


def test_collator_rejects_inconsistent_row():
    with pytest.raises(ValueError, match="sum to 6"):
        PackedCollator(pad_token_id=0)(
            [{"input_ids": [1] * 7, "seq_lengths": [3, 3], "num_padding_tokens": 0}]
        )


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_unit_logits_equal_unit_alone(attn):
    model = tiny_llama(max_position_embeddings=128, attn_implementation=attn)
    batch = PackedCollator(pad_token_id=0)(packed_rows())
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        packed = model(**inputs, use_cache=False).logits[0]
        for row in range(2):
            for unit in unit_slices(row):
                alone = model(input_ids=batch["input_ids"][:, unit], use_cache=False).logits[0]
                torch.testing.assert_close(packed[unit], alone, atol=1e-5, rtol=1e-5)
        # Control: without position_ids the same tokens form one causal sequence and later units change.
        mixed = model(input_ids=batch["input_ids"], use_cache=False).logits[0]
    assert not torch.allclose(mixed[9:23], packed[9:23], atol=1e-3)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_loss_does_not_cross_unit_boundaries(attn):
    model = tiny_llama(max_position_embeddings=128, attn_implementation=attn)
    batch = PackedCollator(pad_token_id=0)(packed_rows())
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=False).logits[0]
        log_probs = logits[:-1].log_softmax(-1)
        targets = batch["labels"][0, 1:]
        trained = targets != -100
        packed_nll = -log_probs[trained].gather(-1, targets[trained, None]).sum()
        alone_nll, alone_tokens = torch.tensor(0.0), 0
        for row in range(2):
            for unit in unit_slices(row):
                ids = batch["input_ids"][:, unit]
                unit_logits = model(input_ids=ids, use_cache=False).logits[0, :-1]
                alone_nll -= unit_logits.log_softmax(-1).gather(-1, ids[0, 1:, None]).sum()
                alone_tokens += ids.shape[1] - 1
    # Every target is a next token inside its own unit: same count and same summed NLL as the units alone.
    assert int(trained.sum()) == alone_tokens
    torch.testing.assert_close(packed_nll, alone_nll, atol=1e-3, rtol=1e-5)


def test_validate_packed_dataset():
    good = packed_rows()
    assert validate_packed_dataset(Dataset.from_list(good)) == sum(SPANS)
    bad_sum = [dict(good[0], seq_lengths=[9, 14])]
    with pytest.raises(ValueError, match="demo, row 0: seq_lengths"):
        validate_packed_dataset(Dataset.from_list(bad_sum), source="demo")
    with pytest.raises(ValueError, match="row 1: 33 input_ids"):
        validate_packed_dataset(
            Dataset.from_list([good[0], dict(good[1], input_ids=good[1]["input_ids"][:-1])])
        )
    with pytest.raises(ValueError, match="num_padding_tokens=3"):
        validate_packed_dataset(Dataset.from_list([dict(good[0], num_padding_tokens=3)]))
    with pytest.raises(ValueError, match="missing column"):
        validate_packed_dataset(Dataset.from_list([{"input_ids": [1, 2]}]))


def ulysses(size: int, attn: str | None) -> ParallelismConfig:
    handler = None
    if attn:  # Accelerate 1.15 checks the name against flash-attn's and sdpa only; DeepSpeed takes any
        handler = DeepSpeedSequenceParallelConfig(sp_attn_implementation="sdpa")
        handler.sp_attn_implementation = attn
    return ParallelismConfig(sp_size=size, sp_handler=handler)


def test_check_parallelism_refuses_unsafe_combinations():
    config = LlamaConfig(num_attention_heads=32, num_key_value_heads=8)
    check_parallelism(None, config, "sdpa")
    check_parallelism(ParallelismConfig(dp_shard_size=8), config, "sdpa")
    check_parallelism(ulysses(8, "flash_attention_2"), config, "flash_attention_2", 131072)
    check_parallelism(ulysses(8, VARLEN_ATTENTION), config, VARLEN_ATTENTION, 131072)
    with pytest.raises(ValueError, match="ring attention"):
        check_parallelism(ParallelismConfig(cp_size=2), config, "sdpa")
    with pytest.raises(ValueError, match="sp_attn_implementation='sdpa'"):
        check_parallelism(ulysses(2, None), config, "flash_attention_2")
    with pytest.raises(ValueError, match="attn_implementation='sdpa'"):
        check_parallelism(ulysses(2, "flash_attention_2"), config, "sdpa")
    with pytest.raises(ValueError, match="attn_implementation='flex_attention'"):
        check_parallelism(ulysses(2, VARLEN_ATTENTION), config, "flex_attention")
    with pytest.raises(ValueError, match="num_attention_heads=32"):
        check_parallelism(ulysses(3, "flash_attention_2"), config, "flash_attention_2")
    odd_kv = LlamaConfig(hidden_size=3072, num_attention_heads=24, num_key_value_heads=6)
    with pytest.raises(ValueError, match="num_key_value_heads=6"):
        check_parallelism(ulysses(4, "flash_attention_2"), odd_kv, "flash_attention_2")
    with pytest.raises(ValueError, match="131071 tokens"):
        check_parallelism(ulysses(8, "flash_attention_2"), config, "flash_attention_2", 131071)
