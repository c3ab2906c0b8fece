"""DeepSpeed-Ulysses on 2 CPU processes (gloo), through DeepSpeed's own engine, equals the 1-process run.

Each rank's data loader yields its own [`PackedCollator`] batch of three packed rows (102 tokens, 12 units);
`UlyssesSPDataLoaderAdapter` gathers both batches and hands every rank its half of each (the shard edge, token 51,
falls inside the unit of tokens 43-56). `UlyssesSPAttentionHF` runs `entropylong_varlen` as the core attention
(per-unit sdpa on CPU) over the whole sequence, its spans found in the all-gathered `position_ids`, and the loss
is transformers' own sequence-parallel loss (`deepspeed_sp_compute_loss`, which the Trainer calls). The model is
wrapped by `deepspeed.initialize` with the sequence-parallel groups, under the ZeRO stage of
`recipes/accelerate_configs/ulysses_sp8.yaml` and the other stages, with `HfDeepSpeedConfig` telling transformers
which stage runs (as Accelerate does); `engine.backward` reduces the gradients the engine's own way, and
`safe_get_full_grad` reads them back whole. Whether the engine sums or averages over the sequence-parallel group,
and whether the loss scales for it, changes with the DeepSpeed and transformers versions: these tests compare the
result, not the mechanism. DeepSpeed's CPU accelerator compiles its shared-memory communication op once on first
use (about a minute on 2 cores, cached in ~/.cache/torch_extensions).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import yaml
from tiny_models import tiny_llama
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from hf_entropylong.train.spans import WHOLE_SEQUENCE_KEYS, PackedCollator, ShardableCollator
from hf_entropylong.train.varlen import VARLEN_ATTENTION, register_varlen_attention

from .conftest import REPO, free_port, tiny_cpt_args
from .test_spans import SPANS, packed_rows, unit_slices

WORLD_SIZE = 2
ROWS = 3  # rows per rank's batch: 102 tokens
KV_HEADS = (2, 1)  # 1 key/value head for 2 ranks: DeepSpeed repeats it before the all-to-all
SP_LAUNCHER = Path(__file__).with_name("sp_launcher.py")
ULYSSES_CONFIG = REPO / "recipes/accelerate_configs/ulysses_sp8.yaml"
RECIPE_ZERO_STAGE = yaml.safe_load(ULYSSES_CONFIG.read_text())["deepspeed_config"]["zero_stage"]
# (ZeRO stage, key/value heads): the recipe's stage with both head counts, and the other stages the range allows
RUNS = [(RECIPE_ZERO_STAGE, kv) for kv in KV_HEADS] + [(s, 2) for s in (1, 2, 3) if s != RECIPE_ZERO_STAGE]


def model(kv_heads: int, attn: str):
    return tiny_llama(
        hidden_size=64, num_key_value_heads=kv_heads, max_position_embeddings=128, attn_implementation=attn
    ).train()


def rank_rows(rank: int) -> list[dict]:
    return packed_rows(WORLD_SIZE * ROWS)[rank * ROWS : (rank + 1) * ROWS]


def deepspeed_config(zero_stage: int) -> dict:
    return {
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": 1,
        "zero_optimization": {"stage": zero_stage},
        "zero_allow_untested_optimizer": True,
        "gradient_clipping": 0.0,
    }


def sequence_parallel_run(rank: int, zero_stage: int, kv_heads: int, collator) -> list[dict]:
    """One forward/backward per micro-batch through DeepSpeed's engine, adapter and attention; what rank 0 sees."""
    import deepspeed
    from accelerate import ParallelismConfig
    from deepspeed.runtime.sequence_parallel import parallel_state_sp
    from deepspeed.runtime.sequence_parallel.ulysses_sp import (
        UlyssesSPAttentionHF,
        UlyssesSPDataLoaderAdapter,
    )
    from deepspeed.utils import safe_get_full_grad
    from transformers.integrations.deepspeed import HfDeepSpeedConfig, deepspeed_sp_compute_loss
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    llama = model(kv_heads, VARLEN_ATTENTION)
    mpu = UlyssesSPAttentionHF.register_with_transformers(
        llama, VARLEN_ATTENTION, WORLD_SIZE, micro_batch_size=1
    )
    config = deepspeed_config(zero_stage)
    transformers_view = HfDeepSpeedConfig(config)  # noqa: F841  (transformers reads the ZeRO stage while it lives)
    optimizer = torch.optim.SGD(llama.parameters(), lr=0.0)  # steps clear the gradients, weights stay
    engine, *_ = deepspeed.initialize(model=llama, optimizer=optimizer, config=config, mpu=mpu)
    group = mpu.get_sequence_parallel_group()
    loader = torch.utils.data.DataLoader(rank_rows(rank), batch_size=ROWS, collate_fn=collator)
    adapter = UlyssesSPDataLoaderAdapter(loader, rank, group, WORLD_SIZE, torch.device("cpu"))
    parallelism = ParallelismConfig(sp_size=WORLD_SIZE, sp_backend="deepspeed")
    outcome = []
    try:
        for micro_batch in adapter:
            keys = sorted(micro_batch)
            loss, output = deepspeed_sp_compute_loss(None, engine, micro_batch, True, parallelism)
            engine.backward(loss)
            grads = {
                name: safe_get_full_grad(p).detach().clone() for name, p in engine.module.named_parameters()
            }
            engine.step()
            shards = [torch.empty_like(output.logits) for _ in range(WORLD_SIZE)]
            torch.distributed.all_gather(shards, output.logits.detach().contiguous(), group=group)
            outcome.append(
                {"keys": keys, "loss": loss.detach(), "logits": torch.cat(shards, dim=1), "grads": grads}
            )
    finally:
        engine.destroy()
        del ALL_ATTENTION_FUNCTIONS[VARLEN_ATTENTION]  # DeepSpeed's wrapper, over the registered kernel
        parallel_state_sp._release_sequence_parallel_groups()
        deepspeed.utils.groups.mpu = None
    return outcome


def sequence_parallel_worker(rank: int, port: int, results: str) -> None:
    import deepspeed

    address = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(WORLD_SIZE)}
    os.environ.update(address, RANK=str(rank), LOCAL_RANK=str(rank))
    deepspeed.init_distributed("gloo", auto_mpi_discovery=False, verbose=False)
    torch.set_num_threads(1)
    register_varlen_attention()
    collator = PackedCollator(pad_token_id=0)
    outcome = {}
    try:  # the collator's own batches, as the adapter received them before ShardableCollator
        sequence_parallel_run(rank, RECIPE_ZERO_STAGE, KV_HEADS[0], collator)
    except IndexError as error:
        outcome["raw_collator_error"] = f"IndexError: {error}"
    for zero_stage, kv_heads in RUNS:
        outcome[zero_stage, kv_heads] = sequence_parallel_run(
            rank, zero_stage, kv_heads, ShardableCollator(collator)
        )
    if rank == 0:
        torch.save(outcome, results)
    torch.distributed.destroy_process_group()


@pytest.fixture(scope="module")
def sequence_parallel(tmp_path_factory) -> dict:
    """Per (ZeRO stage, key/value heads), per micro-batch (= the rank whose batch it is): loss, logits, gradients."""
    pytest.importorskip("deepspeed")
    results = tmp_path_factory.mktemp("ulysses") / "results.pt"
    mp.spawn(sequence_parallel_worker, args=(free_port(), str(results)), nprocs=WORLD_SIZE)
    return torch.load(results)


def one_process(kv_heads: int, rows: list[dict]):
    """Loss, logits and gradients of the packed rows on one process (sdpa, the block-diagonal mask)."""
    llama = model(kv_heads, "sdpa")
    output = llama(**PackedCollator(pad_token_id=0)(rows), use_cache=False)
    output.loss.backward()
    return output.loss.detach(), output.logits.detach(), {n: p.grad for n, p in llama.named_parameters()}


def test_collator_batches_stop_deepspeeds_data_loader(sequence_parallel):
    """Why ShardableCollator exists: the adapter reads `shape[1]` of the 1-D `cu_seq_lens_q`."""
    assert sequence_parallel["raw_collator_error"].startswith("IndexError")


@pytest.mark.parametrize("zero_stage, kv_heads", RUNS, ids=[f"zero{s}-kv{kv}" for s, kv in RUNS])
def test_loss_and_gradients_equal_one_process(sequence_parallel, zero_stage, kv_heads):
    """The gradients after DeepSpeed's own reduction equal one process's: a loss scaled wrong for the engine's
    reduction (a factor of the sequence-parallel size either way) fails here."""
    micro_batches = sequence_parallel[zero_stage, kv_heads]
    assert len(micro_batches) == WORLD_SIZE  # one per rank's batch
    for rank, parallel in enumerate(micro_batches):
        assert parallel["keys"] == ["input_ids", "position_ids", "shift_labels"]
        loss, logits, grads = one_process(kv_heads, rank_rows(rank))
        torch.testing.assert_close(parallel["loss"], loss, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(parallel["logits"], logits, atol=1e-5, rtol=1e-5)
        assert parallel["grads"].keys() == grads.keys()
        for name, grad in grads.items():
            ratio = (parallel["grads"][name].norm() / grad.norm()).item()
            torch.testing.assert_close(
                parallel["grads"][name],
                grad,
                atol=1e-6,
                rtol=1e-5,
                msg=lambda m, n=name, r=ratio: f"{n} ({r:.3f}x): {m}",
            )


def test_units_never_attend_across_boundaries(sequence_parallel):
    logits = sequence_parallel[RUNS[0]][0]["logits"][0]
    llama = model(KV_HEADS[0], "sdpa").eval()
    ids = PackedCollator(pad_token_id=0)(rank_rows(0))["input_ids"]
    with torch.no_grad():
        for row in range(ROWS):
            for unit in unit_slices(row):
                alone = llama(input_ids=ids[:, unit], use_cache=False).logits[0]
                torch.testing.assert_close(logits[unit], alone, atol=1e-5, rtol=1e-5)
        # Control: one causal sequence over the same tokens gives other logits for every unit after the first.
        mixed = llama(input_ids=ids, use_cache=False).logits[0]
    assert not torch.allclose(mixed[SPANS[0] : sum(SPANS)], logits[SPANS[0] : sum(SPANS)], atol=1e-3)


@pytest.mark.parametrize("collator", ["cpt", "sft"])
def test_shardable_collator_keeps_one_entry_per_token(collator):
    """Both training scripts' collators: PackedCollator (cpt) and TRL's padding-free one (sft, `seq_idx` too)."""
    rows = packed_rows()
    if collator == "cpt":
        batch = ShardableCollator(PackedCollator(pad_token_id=0))(rows)
    else:
        trl_collator = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)
        batch = ShardableCollator(trl_collator)([{"input_ids": r["input_ids"]} for r in rows])
    assert {"input_ids", "labels", "position_ids"} <= set(batch) and not set(WHOLE_SEQUENCE_KEYS) & set(batch)
    length = batch["input_ids"].shape[1]
    assert all(value.shape == (1, length) for value in batch.values())


@pytest.mark.slow
def test_accelerate_launch_ulysses_two_processes(packed_dir, tmp_path):
    """`ulysses_sp8.yaml` on 2 CPU processes (sp_size 2, ZeRO-3, gloo) trains the tiny CPT recipe end to end:
    Accelerate prepares DeepSpeed's engine, adapter and attention, and the Trainer its sequence-parallel loss.
    `sp_launcher.py` names `entropylong_varlen` as the sequence-parallel attention after Accelerate's check,
    which only knows flash-attn's names (and sdpa), none of which keeps units apart on a CPU."""
    pytest.importorskip("deepspeed")
    accelerate = Path(sys.executable).parent / "accelerate"
    command = [
        str(accelerate), "launch", "--config_file", str(REPO / "recipes/accelerate_configs/ulysses_sp8.yaml"),
        "--num_processes", "2", "--mixed_precision", "no", "--zero3_init_flag", "false",
        "--main_process_port", free_port(), "--parallelism_config_sp_size", "2", str(SP_LAUNCHER), VARLEN_ATTENTION,
        *tiny_cpt_args(packed_dir, tmp_path, "--max_steps", "2", "--attn_implementation", VARLEN_ATTENTION),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    run = (tmp_path / "entropylong_training.json").read_text()
    assert '"steps": 2' in run and '"sequence parallel size": 2' in run
    assert (tmp_path / "model.safetensors").exists()
