"""Ulysses sequence parallelism on 2 CPU processes (gloo) equals the 1-process run, unit boundaries included."""

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from tiny_models import tiny_llama

from hf_entropylong.train.spans import PackedCollator
from hf_entropylong.train.ulysses import (
    all_reduce_gradients,
    register_ulysses_attention,
    shard_packed_batch,
)

from .test_spans import SPANS, packed_rows, unit_slices

WORLD_SIZE = 2
ROWS = 3  # 102 tokens: the shard edge (token 51) falls inside the unit of tokens 43-56
KV_HEADS = (2, 1)  # 1 key/value head for 2 ranks: the heads are repeated before the all-to-all


def model(kv_heads: int, attn: str):
    return tiny_llama(
        hidden_size=64,
        num_key_value_heads=kv_heads,
        max_position_embeddings=128,
        attn_implementation=attn,
    ).train()


def batch() -> dict:
    return PackedCollator(pad_token_id=0)(packed_rows(ROWS))


def run_step(kv_heads: int, attn: str, inputs: dict):
    """The model after one forward/backward, with its loss and logits."""
    llama = model(kv_heads, attn)
    output = llama(**inputs, use_cache=False)
    output.loss.backward()
    return llama, output.loss.detach(), output.logits.detach()


def gradients(llama) -> dict[str, torch.Tensor]:
    return {name: p.grad for name, p in llama.named_parameters()}


def sequence_parallel_worker(rank: int, port: int, results: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD_SIZE)
    torch.set_num_threads(1)
    name = register_ulysses_attention()
    outcome = {}
    for kv_heads in KV_HEADS:
        shard = shard_packed_batch(batch(), rank, WORLD_SIZE)
        llama, loss, logits = run_step(kv_heads, name, shard)
        all_reduce_gradients(llama)
        dist.all_reduce(loss)
        gathered = [torch.empty_like(logits) for _ in range(WORLD_SIZE)]
        dist.all_gather(gathered, logits)
        outcome[kv_heads] = {"loss": loss, "logits": torch.cat(gathered, dim=1), "grads": gradients(llama)}
    if rank == 0:
        torch.save(outcome, results)
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def sequence_parallel(tmp_path_factory) -> dict:
    """Loss, gathered logits and summed gradients of the 2-rank Ulysses run, per key/value head count."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    results = tmp_path_factory.mktemp("ulysses") / "results.pt"
    mp.spawn(sequence_parallel_worker, args=(port, str(results)), nprocs=WORLD_SIZE)
    return torch.load(results)


@pytest.mark.parametrize("kv_heads", KV_HEADS)
def test_loss_and_gradients_equal_one_process(sequence_parallel, kv_heads):
    llama, loss, logits = run_step(kv_heads, "sdpa", batch())
    grads = gradients(llama)
    parallel = sequence_parallel[kv_heads]
    torch.testing.assert_close(parallel["loss"], loss, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(parallel["logits"], logits, atol=1e-5, rtol=1e-5)
    assert parallel["grads"].keys() == grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(parallel["grads"][name], grad, atol=1e-6, rtol=1e-5, msg=name)


def test_units_never_attend_across_boundaries(sequence_parallel):
    logits = sequence_parallel[KV_HEADS[0]]["logits"][0]
    llama = model(KV_HEADS[0], "sdpa").eval()
    ids = batch()["input_ids"]
    with torch.no_grad():
        for row in range(ROWS):
            for unit in unit_slices(row):
                alone = llama(input_ids=ids[:, unit], use_cache=False).logits[0]
                torch.testing.assert_close(logits[unit], alone, atol=1e-5, rtol=1e-5)
        # Control: one causal sequence over the same tokens gives other logits for every unit after the first.
        mixed = llama(input_ids=ids, use_cache=False).logits[0]
    assert not torch.allclose(mixed[SPANS[0] : sum(SPANS)], logits[SPANS[0] : sum(SPANS)], atol=1e-3)


def test_shard_packed_batch_cuts_after_shifting():
    full = batch()
    shards = [shard_packed_batch(full, rank, WORLD_SIZE) for rank in range(WORLD_SIZE)]
    half = full["input_ids"].shape[1] // WORLD_SIZE
    assert [s["input_ids"].shape[1] for s in shards] == [half, half]
    shift = torch.cat([s["shift_labels"] for s in shards], dim=1)[0]
    # The target of rank 0's last token is rank 1's first label: the shard edge does not drop it.
    assert shift[half - 1] == full["labels"][0, half] != -100
    assert torch.equal(shift[:-1], full["labels"][0, 1:]) and shift[-1] == -100
    assert all(s["num_items_in_batch"] == int((full["labels"][0, 1:] != -100).sum()) for s in shards)
    assert all(torch.equal(s["cu_seq_lens_q"], full["cu_seq_lens_q"]) for s in shards)
    with pytest.raises(ValueError, match="divisible by 4"):
        shard_packed_batch(full, 0, 4)  # 102 tokens
