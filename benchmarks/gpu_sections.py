"""The sections of `make gpu-check` (`benchmarks/gpu_check.py`): what each measures, and the numbers it checks.

Every section is a function `(Context) -> dict` whose result holds its measurements and `checks`: each check a
measured value against a stated bound (`TOLERANCES`; the CPU dry run runs float32 at toy sizes and has its own,
tighter bounds). A check outside its bound fails the section, and the command exits 1.

- `test_gpu`: `tests/train/test_gpu.py` under pytest; its whole output is kept (the failing tests' tracebacks).
- `kernels`: the packed-attention kernels side by side, forward + backward over one packed row of 131,072 tokens
  (units of 1K-16K tokens, 32 query / 8 key-value heads of 64, bf16): flex_attention with a document BlockMask,
  torch's `varlen_attn` as the training scripts call it (`entropylong_varlen`), and flash-attn's
  `flash_attn_varlen_func` when it is importable. Output and q/k/v gradients are compared with per-unit sdpa in
  float32 (‖out − ref‖/‖ref‖); TFLOP/s count 3.5 × the forward's 4 · heads · head_dim · (attended pairs).
- `cpt_*`: the CPT step of `benchmarks/train_throughput.py` (`entropylong_varlen`, activation checkpointing,
  TRL's fused LM head), Llama-3.2-1B shape at 131,072 tokens with AdamW and Llama-3-8B shape at 32,768 tokens
  (forward + backward), Liger's RoPE/RMSNorm/SwiGLU on and off: tokens/s, MFU, peak memory. The loss of a random
  model must be ln(vocab) within 1 nat (a broken step gives NaN or garbage).
- `sequence_parallel`: DeepSpeed-Ulysses' input path on one process — `PackedCollator` → `ShardableCollator` →
  `UlyssesSPDataLoaderAdapter` (shift_labels) → `UlyssesSPAttentionHF` around the core attention — against the
  plain packed batch (same attention) and the block-diagonal sdpa reference: loss, every gradient, step time. It
  runs `entropylong_varlen` and the 8B recipes' attention resolved as the training scripts resolve it
  (`require_attention`; a kernel with no build reachable from this machine is recorded as refused).
- `builder_lm`: the builder's LM stages at the Llama-3-8B shape (`builder_bench.lm_measurements`): entropy and
  verification tokens/s (`entropy_tokens_per_s`, `verify_tokens_per_s`, which `build_cost.py --measured` reads),
  peak memory, and each method's entropies against the naive full-logits way.
- `faiss_index`: the corpus index's GPU placement (`gpu_index_check.index_checks`): the plan on this node's GPUs
  and, with a CUDA build of FAISS, a copy on the rank's GPU whose recall@10 against the CPU index is ≥ 0.99.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes/llama3-8b/cpt/config_128k.yaml"
# (bound on a GPU in bf16, bound in the float32 CPU dry run) of ‖result − reference‖ / ‖reference‖.
TOLERANCES = {
    "kernels": {"output": (2e-2, 1e-5), "grads": (5e-2, 1e-5)},
    "sequence_parallel": {"vs_plain": (1e-2, 1e-6), "vs_sdpa": (5e-2, 1e-5)},
    "builder_lm": {"entropy": (2e-2, 1e-5)},
}


@dataclass
class Context:
    """What every section is given: the device, the timed steps, and the bounds overridden on the command line."""

    device: str
    steps: int
    out_dir: Path
    overrides: dict[str, float] = field(default_factory=dict)

    @property
    def dry_run(self) -> bool:
        return self.device == "cpu"

    def bound(self, section: str, check: str) -> float:
        if section in self.overrides:
            return self.overrides[section]
        gpu, cpu = TOLERANCES[section][check]
        return cpu if self.dry_run else gpu


def check(result: dict, what: str, value: float, bound: float, at_least: bool = False) -> None:
    """Record `value` against `bound` (an upper bound, or a lower one when `at_least`) in `result["checks"]`."""
    ok = math.isfinite(value) and (value >= bound if at_least else value <= bound)
    result.setdefault("checks", []).append(
        {"what": what, "value": value, "bound": f"{'≥' if at_least else '≤'} {bound:g}", "ok": ok}
    )


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.detach().double().cpu(), ref.detach().double().cpu()
    return float((out - ref).norm() / ref.norm())


def timed(function, device: str, steps: int) -> float:
    """Median seconds of `function()` over `steps` runs after a warm-up one."""
    times = []
    for _ in range(steps + 1):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        function()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times[1:])[len(times[1:]) // 2]


def test_gpu(context: Context) -> dict:
    """`tests/train/test_gpu.py` under pytest, in this process: its outcome line, exit status and whole output
    (also in `test_gpu.log`)."""
    import pytest

    log = context.out_dir / "test_gpu.log"
    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "w") as file:  # pytest's own output, tracebacks included, through the file descriptors
        os.dup2(file.fileno(), 1), os.dup2(file.fileno(), 2)
        try:
            returncode = int(
                pytest.main(["-q", "-rA", "-p", "no:cacheprovider", str(REPO / "tests/train/test_gpu.py")])
            )
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
    output = log.read_text()
    print(output, flush=True)
    lines = output.strip().splitlines()
    result = {"returncode": returncode, "summary": lines[-1].strip("= ") if lines else "", "output": output}
    result["checks"] = [
        {"what": "pytest exit status", "value": returncode, "bound": "= 0", "ok": returncode == 0}
    ]
    return result


def kernels(context: Context) -> dict:
    """Forward + backward of each packed-attention kernel over one row, against per-unit float32 sdpa."""
    import train_throughput as bench
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    from hf_entropylong.train.varlen import VARLEN_ATTENTION, per_span_attention, varlen_attention_forward

    device, length = context.device, 256 if context.dry_run else 131072
    heads, kv_heads, head_dim = (4, 2, 16) if context.dry_run else (32, 8, 64)
    dtype = torch.float32 if context.dry_run else torch.bfloat16
    spans = bench.unit_spans(length, min(1024, length // 8), min(16384, length // 2))
    cu = torch.tensor([0, *itertools.accumulate(spans)], dtype=torch.int32, device=device)
    generator = torch.Generator(device).manual_seed(0)
    q, k, v = (
        torch.randn(length, n, head_dim, device=device, dtype=dtype, generator=generator)
        for n in (heads, kv_heads, kv_heads)
    )
    upstream = torch.randn(length, heads, head_dim, device=device, dtype=dtype, generator=generator)
    leaves = [x.float().detach().requires_grad_() for x in (q, k, v)]
    groups = heads // kv_heads
    reference = per_span_attention(
        leaves[0],
        leaves[1].repeat_interleave(groups, 1),
        leaves[2].repeat_interleave(groups, 1),
        cu,
        cu,
        0,
        0,
    )
    reference.backward(upstream.float())
    reference_grads = [leaf.grad for leaf in leaves]
    document = torch.repeat_interleave(
        torch.arange(len(spans), device=device), torch.tensor(spans, device=device)
    )

    def same_unit_causal(batch, head, query, key):
        return (document[query] == document[key]) & (query >= key)

    mask = create_block_mask(
        same_unit_causal, None, None, length, length, device=device, _compile=not context.dry_run
    )
    flex = flex_attention if context.dry_run else torch.compile(flex_attention)
    longest = max(spans)
    implementations = {
        "flex_attention": lambda q, k, v: flex(
            *(x.transpose(0, 1)[None] for x in (q, k, v)), block_mask=mask, enable_gqa=True
        )[0].transpose(0, 1),
        VARLEN_ATTENTION: lambda q, k, v: varlen_attention_forward(
            None, *(x.transpose(0, 1)[None] for x in (q, k, v)), None,
            cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=longest, max_length_k=longest,
        )[0][0],
    }  # fmt: skip
    if not context.dry_run and importlib.util.find_spec("flash_attn"):
        from flash_attn import flash_attn_varlen_func

        implementations["flash_attention_2"] = lambda q, k, v: flash_attn_varlen_func(
            q, k, v, cu, cu, longest, longest, causal=True
        )
    flops = 3.5 * 4 * heads * head_dim * sum(s * (s + 1) // 2 for s in spans)
    result = {"tokens": length, "units": len(spans), "rows": []}
    for name, kernel in implementations.items():
        backward = not (context.dry_run and name == "flex_attention")  # flex has no CPU backward
        inputs = [x.detach().requires_grad_(backward) for x in (q, k, v)]

        def step(kernel=kernel, inputs=inputs, backward=backward):
            out = kernel(*inputs)
            if backward:
                out.backward(upstream)
            return out

        for x in inputs:
            x.grad = None
        output = step()
        row = {"kernel": name, "step": "fwd+bwd" if backward else "fwd"}
        row["vs_fp32_per_unit_sdpa"] = relative_error(output, reference)
        check(result, f"{name} output", row["vs_fp32_per_unit_sdpa"], context.bound("kernels", "output"))
        if backward:
            row["grads_vs_fp32"] = max(
                relative_error(x.grad, g) for x, g in zip(inputs, reference_grads, strict=True)
            )
            check(result, f"{name} q/k/v gradients", row["grads_vs_fp32"], context.bound("kernels", "grads"))
        seconds = timed(step, device, context.steps)
        row.update(
            ms=round(seconds * 1e3, 1), tflops=round(flops / (1 if backward else 3.5) / seconds / 1e12, 1)
        )
        result["rows"].append(row)
        print(f"kernel {row}", flush=True)
    return result


def cpt(shape: str, length: int, optimizer: bool, liger: bool):
    """The section of one CPT step (`train_throughput.throughput`) of `shape` at `length` tokens."""

    def section(context: Context) -> dict:
        import train_throughput as bench

        from hf_entropylong.train.varlen import VARLEN_ATTENTION

        size = ("toy", 256) if context.dry_run else (shape, length)
        use_liger = liger and not context.dry_run  # Liger's Triton kernels need CUDA
        row = bench.throughput(
            *size, VARLEN_ATTENTION, context.device, context.steps, optimizer, liger=use_liger
        )
        result = {"row": row, "liger": use_liger}
        if "error" in row:
            result["checks"] = [{"what": "step", "value": row["error"], "bound": "runs", "ok": False}]
            return result
        vocab = bench.SHAPES[size[0]]["vocab_size"]
        check(result, f"|loss − ln {vocab}| of the random model", abs(row["loss"] - math.log(vocab)), 1.0)
        return result

    return section


def init_single_process_group(device: str) -> None:
    """A 1-rank process group for DeepSpeed's communication layer (nccl on a GPU, gloo on the CPU)."""
    import deepspeed

    if torch.distributed.is_initialized():
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", LOCAL_RANK="0", WORLD_SIZE="1"
    )
    deepspeed.init_distributed(
        "nccl" if device == "cuda" else "gloo", auto_mpi_discovery=False, verbose=False
    )


def ulysses_on_one_rank(attention: str, device: str, shape: str, length: int, rows: int, steps: int) -> dict:
    """One packed batch through DeepSpeed's Ulysses adapter and attention on one rank (`attention` as the core),
    against the plain batch with the same attention and with block-diagonal sdpa: loss, gradients, step time."""
    import train_throughput as bench
    from deepspeed.runtime.sequence_parallel.ulysses_sp import (
        UlyssesSPAttentionHF,
        UlyssesSPDataLoaderAdapter,
    )
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    from hf_entropylong.train.spans import PackedCollator, ShardableCollator

    init_single_process_group(device)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = bench.llama(shape, "sdpa", dtype, device, length).train()
    model.set_attn_implementation(
        attention
    )  # resolved as from_pretrained resolves it (a Hub kernel is loaded)
    if model.config._attn_implementation != attention:
        raise ValueError(
            f"{attention} resolved to {model.config._attn_implementation}: DeepSpeed would refuse it"
        )
    config, world = model.config, torch.distributed.group.WORLD
    spans = bench.unit_spans(length, length // 16, length // 4)
    generator = torch.Generator().manual_seed(0)
    examples = [
        {
            "input_ids": torch.randint(0, config.vocab_size, (length,), generator=generator).tolist(),
            "seq_lengths": spans,
        }
        for _ in range(rows)
    ]
    collator = PackedCollator(pad_token_id=0)
    loader = torch.utils.data.DataLoader(examples, batch_size=rows, collate_fn=ShardableCollator(collator))
    sharded = next(iter(UlyssesSPDataLoaderAdapter(loader, 0, world, 1, torch.device(device))))
    sharded["labels"] = sharded["shift_labels"]  # as the Trainer does
    wrapper = UlyssesSPAttentionHF(
        attn=ALL_ATTENTION_FUNCTIONS[attention],
        batch_size=1,
        attn_head_count=config.num_attention_heads,
        attn_head_size=config.hidden_size // config.num_attention_heads,
        kv_head_count=config.num_key_value_heads,
        num_hidden_layers=config.num_hidden_layers,
        process_group=world,
        seq_length_is_variable=True,
    )
    core = ALL_ATTENTION_FUNCTIONS[attention]
    runs = {"sdpa": ("sdpa", collator(examples)), "plain": (attention, collator(examples))}
    runs["ulysses"] = (attention, sharded)
    results = {}
    for path, (implementation, batch) in runs.items():
        model.set_attn_implementation(implementation)
        batch = bench.to(batch, device)
        if path == "ulysses":  # what register_with_transformers installs in the core's place for 2+ ranks
            ALL_ATTENTION_FUNCTIONS[attention] = lambda module, q, k, v, mask, *args, **kwargs: wrapper(
                module, q, k, v, None, *args, **kwargs
            )
        try:
            model.zero_grad()
            loss = model(**batch).loss
            loss.backward()
            grads = torch.cat([p.grad.flatten().float() for p in model.parameters()])
            seconds = timed(lambda batch=batch: model(**batch).loss.backward(), device, steps)
        finally:
            ALL_ATTENTION_FUNCTIONS[attention] = core
        results[path] = {"keys": sorted(batch), "loss": loss.detach(), "grads": grads, "step_s": seconds}
    plain, ulysses, sdpa = results["plain"], results["ulysses"], results["sdpa"]
    return {
        "attention": attention,
        "tokens": rows * length,
        "units": rows * len(spans),
        "adapter_keys": ulysses["keys"],
        "loss": float(plain["loss"]),
        "loss_ulysses": float(ulysses["loss"]),
        "loss_vs_plain": relative_error(ulysses["loss"], plain["loss"]),
        "grads_vs_plain": relative_error(ulysses["grads"], plain["grads"]),
        "loss_vs_sdpa": relative_error(plain["loss"], sdpa["loss"]),
        "grads_vs_sdpa": relative_error(plain["grads"], sdpa["grads"]),
        "step_s_plain": round(plain["step_s"], 3),
        "step_s_ulysses": round(ulysses["step_s"], 3),
    }


def sequence_parallel(context: Context) -> dict:
    """`ulysses_on_one_rank` for `entropylong_varlen` and for the 8B recipe's attention, when it resolves here."""
    from hf_entropylong.train.attention import require_attention
    from hf_entropylong.train.varlen import VARLEN_ATTENTION, register_varlen_attention

    register_varlen_attention()
    recipe_attention = yaml.safe_load(RECIPE.read_text())["attn_implementation"]
    result = {"rows": [], "refused": {}}
    for attention in dict.fromkeys([VARLEN_ATTENTION, recipe_attention]):
        try:
            require_attention(attention)
        except (ImportError, ValueError) as error:
            result["refused"][attention] = str(error)
            continue
        size = ("toy", 128) if context.dry_run else ("small", 8192)
        row = ulysses_on_one_rank(attention, context.device, *size, rows=2, steps=context.steps)
        for name in ("loss_vs_plain", "grads_vs_plain"):
            check(result, f"{attention} {name}", row[name], context.bound("sequence_parallel", "vs_plain"))
        for name in ("loss_vs_sdpa", "grads_vs_sdpa"):
            check(result, f"{attention} {name}", row[name], context.bound("sequence_parallel", "vs_sdpa"))
        result["rows"].append(row)
        print(f"sequence parallel {row}", flush=True)
    return result


def builder_lm(context: Context) -> dict:
    """The entropy and verification stages at the Llama-3-8B shape (`builder_bench.lm_measurements`)."""
    import builder_bench

    shape, dtype = ("toy", "float32") if context.dry_run else ("llama3-8b", "bfloat16")
    sizes = (
        ["--batch", "1", "--seq", "64", "--candidates", "2", "--context_tokens", "32", "--chunk_sizes", "32"]
        if context.dry_run
        else [
            "--batch",
            "2",
            "--seq",
            "4096",
            "--candidates",
            "8",
            "--context_tokens",
            "2048",
            "--chunk_sizes",
            "1024",
        ]
    )
    (args,) = builder_bench.HfArgumentParser(builder_bench.BenchmarkArguments).parse_args_into_dataclasses(
        args=[
            "--part",
            "lm",
            "--shape",
            shape,
            "--device",
            context.device,
            "--dtype",
            dtype,
            "--repeats",
            "2",
            *sizes,
        ]
    )
    measured = builder_bench.lm_measurements(args)
    rates = {
        stage: max(
            (
                r["tokens_per_s"]
                for r in measured["rows"]
                if r["method"].startswith(prefix) and "error" not in r
            ),
            default=0.0,
        )
        for stage, prefix in (("entropy", "next_token_entropy"), ("verify", "context_entropy"))
    }
    result = {**measured, "entropy_tokens_per_s": rates["entropy"], "verify_tokens_per_s": rates["verify"]}
    for method, difference in measured["vs_naive"].items():
        check(
            result,
            f"{method} entropies vs the naive way's",
            difference,
            context.bound("builder_lm", "entropy"),
        )
    for stage, rate in rates.items():
        check(result, f"{stage} tokens/s", rate, 1.0, at_least=True)
    return result


def faiss_index(context: Context) -> dict:
    """The index placement checks of `gpu_index_check.py`; the CPU dry run plans for one 80 GiB GPU instead."""
    from gpu_index_check import CheckFailed, Checks, index_checks

    from hf_entropylong.index.gpu_placement import GIB, NodeGpus

    lines = Checks()
    result = {"lines": lines}
    if importlib.util.find_spec("faiss") is None:
        result["skipped"] = "faiss is not installed (the [gpu] extra: faiss-gpu)"
        return result
    try:
        index_checks(NodeGpus(0, 1, (80 * GIB,)) if context.dry_run else None, lines)
    except CheckFailed as failure:
        result["checks"] = [{"what": str(failure), "value": None, "bound": "holds", "ok": False}]
    result["skipped"] = next((line["what"] for line in lines if line["what"].startswith("SKIPPED")), None)
    return result


# The section functions by name; their order and time limits are `gpu_check.SECTIONS`.
FUNCTIONS = {
    "test_gpu": test_gpu,
    "kernels": kernels,
    "cpt_1b_128k_liger": cpt("llama3-1b", 131072, True, liger=True),
    "cpt_8b_32k_liger": cpt("llama3-8b", 32768, False, liger=True),
    "sequence_parallel": sequence_parallel,
    "builder_lm": builder_lm,
    "faiss_index": faiss_index,
    "cpt_1b_128k": cpt("llama3-1b", 131072, True, liger=False),
    "cpt_8b_32k": cpt("llama3-8b", 32768, False, liger=False),
}
