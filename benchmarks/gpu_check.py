"""`make gpu-check`: the training half's GPU claims, checked and measured on one GPU in one run.

1. `tests/train/test_gpu.py`: every varlen path's logits and gradients against the CPU block-diagonal reference,
   and Liger's kernels against the plain layers.
2. The packed-attention kernels side by side, forward + backward over one packed row (units of 1K-16K tokens,
   32 query / 8 key-value heads of 64, bf16): flex_attention with a document BlockMask, torch's `varlen_attn`
   as the training scripts call it (`entropylong_varlen`), and flash-attn's `flash_attn_varlen_func` when it is
   importable. Each output is compared with per-unit sdpa in float32; TFLOP/s count 3.5 × the forward's
   4 · heads · head_dim · (attended query-key pairs).
3. The CPT step of `benchmarks/train_throughput.py` with the recipes' settings (`entropylong_varlen` or flex,
   Liger's RoPE/RMSNorm/SwiGLU, activation checkpointing, TRL's fused LM head): the Llama-3.2-1B shape at 131,072
   tokens (with AdamW) and the Llama-3-8B shape at 32,768 (forward + backward): tokens/s, MFU, peak memory.
4. The sequence-parallel input path on one process: `PackedCollator` → `ShardableCollator` → DeepSpeed's
   `UlyssesSPDataLoaderAdapter` (shift_labels) → `UlyssesSPAttentionHF` around `entropylong_varlen` (spans from
   the gathered position_ids), against the plain packed batch: loss and gradients, and both paths' step time.

Writes one JSON (`--out`) and, with `--benchmarks BENCHMARKS.md`, replaces the file's gpu-check section by the
tables. `--dry-run` runs the same code on the CPU at toy sizes (no Liger, whose kernels need CUDA): the test suite
runs it, so the check cannot rot. Needs datasets, trl, deepspeed (and liger-kernel on the GPU): `make gpu-wheels`
collects them as wheels for a machine without network, which `make gpu-check` installs first.

    python benchmarks/gpu_check.py --out outputs/gpu_check.json --benchmarks BENCHMARKS.md
    python benchmarks/gpu_check.py --dry-run --out /tmp/gpu_check.json
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import itertools
import json
import os
import re
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch
import train_throughput as bench
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

from hf_entropylong.train.spans import PackedCollator, ShardableCollator
from hf_entropylong.train.varlen import VARLEN_ATTENTION, per_span_attention, varlen_attention_forward

REPO = Path(__file__).resolve().parents[1]
MARKERS = ("<!-- gpu-check:start -->", "<!-- gpu-check:end -->")
PACKAGES = (
    "torch",
    "transformers",
    "trl",
    "accelerate",
    "datasets",
    "deepspeed",
    "liger-kernel",
    "flash-attn",
)


def versions() -> dict:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def gpu_tests() -> dict:
    """Run tests/train/test_gpu.py; its outcome line and exit status."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/train/test_gpu.py"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    return {"returncode": done.returncode, "summary": lines[-1] if lines else done.stderr[-500:]}


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


def attention_kernels(device: str, length: int, steps: int, heads: int = 32, kv_heads: int = 8) -> list[dict]:
    """Forward + backward of each packed-attention kernel over one row, against per-unit float32 sdpa."""
    head_dim, dtype = 64, torch.bfloat16 if device == "cuda" else torch.float32
    spans = bench.unit_spans(length, min(1024, length // 8), min(16384, length // 2))
    cu = torch.tensor([0, *itertools.accumulate(spans)], dtype=torch.int32, device=device)
    generator = torch.Generator(device).manual_seed(0)
    q, k, v = (
        torch.randn(length, n, head_dim, device=device, dtype=dtype, generator=generator)
        for n in (heads, kv_heads, kv_heads)
    )
    groups = heads // kv_heads
    with torch.no_grad():
        repeat = {"k": k.float().repeat_interleave(groups, 1), "v": v.float().repeat_interleave(groups, 1)}
        reference = per_span_attention(q.float(), repeat["k"], repeat["v"], cu, cu, 0, 0)
    document = torch.repeat_interleave(
        torch.arange(len(spans), device=device), torch.tensor(spans, device=device)
    )

    def same_unit_causal(batch, head, query, key):
        return (document[query] == document[key]) & (query >= key)

    mask = create_block_mask(
        same_unit_causal, None, None, length, length, device=device, _compile=device == "cuda"
    )
    flex = torch.compile(flex_attention) if device == "cuda" else flex_attention
    longest = max(spans)
    kernels = {
        "flex_attention": lambda q, k, v: flex(
            *(x.transpose(0, 1)[None] for x in (q, k, v)), block_mask=mask, enable_gqa=True
        )[0].transpose(0, 1),
        VARLEN_ATTENTION: lambda q, k, v: varlen_attention_forward(
            None, *(x.transpose(0, 1)[None] for x in (q, k, v)), None,
            cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=longest, max_length_k=longest,
        )[0][0],
    }  # fmt: skip
    if device == "cuda" and importlib.util.find_spec("flash_attn"):
        from flash_attn import flash_attn_varlen_func

        kernels["flash_attention_2"] = lambda q, k, v: flash_attn_varlen_func(
            q, k, v, cu, cu, longest, longest, causal=True
        )
    flops = 3.5 * 4 * heads * head_dim * sum(s * (s + 1) // 2 for s in spans)
    rows = []
    for name, kernel in kernels.items():
        backward = device == "cuda" or name != "flex_attention"  # flex has no CPU backward
        leaves = [x.detach().requires_grad_(backward) for x in (q, k, v)]

        def step(kernel=kernel, leaves=leaves, backward=backward):
            out = kernel(*leaves).float().square().mean()
            if backward:
                out.backward()

        seconds = timed(step, device, steps)
        with torch.no_grad():
            error = bench.relative_error(kernel(q, k, v), reference)
        rows.append(
            {
                "kernel": name,
                "tokens": length,
                "units": len(spans),
                "step": "fwd+bwd" if backward else "fwd",
                "ms": round(seconds * 1e3, 1),
                "tflops": round(flops / (1 if backward else 3.5) / seconds / 1e12, 1),
                "vs_fp32_per_unit_sdpa": error,
            }
        )
        print(f"kernel {rows[-1]}", flush=True)
    return rows


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


def sequence_parallel_path(device: str, shape: str, length: int, rows: int, steps: int) -> dict:
    """DeepSpeed's Ulysses adapter and attention on one rank against the plain packed batch: loss, gradients."""
    from deepspeed.runtime.sequence_parallel.ulysses_sp import (
        UlyssesSPAttentionHF,
        UlyssesSPDataLoaderAdapter,
    )
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    init_single_process_group(device)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = bench.llama(shape, VARLEN_ATTENTION, dtype, device, length).train()
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
    batches = {
        "plain": collator(examples),
        "deepspeed_ulysses": next(
            iter(UlyssesSPDataLoaderAdapter(loader, 0, world, 1, torch.device(device)))
        ),
    }
    batches["deepspeed_ulysses"]["labels"] = batches["deepspeed_ulysses"][
        "shift_labels"
    ]  # as the Trainer does
    attention = UlyssesSPAttentionHF(
        attn=ALL_ATTENTION_FUNCTIONS[VARLEN_ATTENTION],
        batch_size=1,
        attn_head_count=config.num_attention_heads,
        attn_head_size=config.hidden_size // config.num_attention_heads,
        kv_head_count=config.num_key_value_heads,
        num_hidden_layers=config.num_hidden_layers,
        process_group=world,
        seq_length_is_variable=True,
    )
    results = {}
    for path, batch in batches.items():
        batch = bench.to(batch, device)
        if path == "deepspeed_ulysses":  # what register_with_transformers installs for 2+ ranks
            ALL_ATTENTION_FUNCTIONS[VARLEN_ATTENTION] = lambda module, q, k, v, mask, *args, **kwargs: (
                attention(module, q, k, v, None, *args, **kwargs)
            )
        try:
            model.zero_grad()
            loss = model(**batch).loss
            loss.backward()
            grads = torch.cat([p.grad.flatten().float() for p in model.parameters()])
            seconds = timed(lambda batch=batch: model(**batch).loss.backward(), device, steps)
        finally:
            if path == "deepspeed_ulysses":
                del ALL_ATTENTION_FUNCTIONS[VARLEN_ATTENTION]
        results[path] = {"keys": sorted(batch), "loss": float(loss), "grads": grads, "step_s": seconds}
    plain, ulysses = results["plain"], results["deepspeed_ulysses"]
    row = {
        "tokens": rows * length,
        "units": rows * len(spans),
        "adapter_keys": ulysses["keys"],
        "loss": plain["loss"],
        "loss_ulysses": ulysses["loss"],
        "grads_vs_plain": bench.relative_error(ulysses["grads"], plain["grads"]),
        "step_s_plain": round(plain["step_s"], 3),
        "step_s_ulysses": round(ulysses["step_s"], 3),
    }
    print(f"sequence parallel {row}", flush=True)
    return row


def kernels_table(rows: list[dict]) -> str:
    lines = [
        "| kernel | tokens | units | step | ms | TFLOP/s | ‖out − fp32 per-unit sdpa‖/‖ref‖ |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['kernel']} | {r['tokens']:,} | {r['units']} | {r['step']} | {r['ms']} | {r['tflops']} | "
        f"{r['vs_fp32_per_unit_sdpa']:.1e} |"
        for r in rows
    ]
    return "\n".join(lines)


def sequence_parallel_table(sp: dict) -> str:
    return "\n".join(
        [
            "| sequence-parallel path (1 rank) | tokens | units | loss | ‖Δ grads‖/‖grads‖ | step s |",
            "|---|---|---|---|---|---|",
            f"| plain PackedCollator batch | {sp['tokens']:,} | {sp['units']} | {sp['loss']:.4f} | | "
            f"{sp['step_s_plain']} |",
            f"| ShardableCollator → UlyssesSPDataLoaderAdapter → UlyssesSPAttentionHF | {sp['tokens']:,} | "
            f"{sp['units']} | {sp['loss_ulysses']:.4f} | {sp['grads_vs_plain']:.1e} | {sp['step_s_ulysses']} |",
        ]
    )


def markdown(result: dict) -> str:
    env = result["versions"]
    lines = [
        f"`make gpu-check` on {result['device']} · "
        + " · ".join(f"{name} {version or 'not installed'}" for name, version in env.items()),
        "",
        f"tests/train/test_gpu.py: {result['test_gpu']['summary']}",
    ]
    tables = {
        "kernels": kernels_table,
        "throughput": bench.throughput_table,
        "sequence_parallel": sequence_parallel_table,
    }
    for name, table in tables.items():
        section = result[name]
        failed = isinstance(section, dict) and "error" in section
        lines += ["", f"{name}: failed: {section['error']}" if failed else table(section)]
    return "\n".join(lines)


def run_section(name: str, function):
    """`function()`, or `{"error": …}` when it raises: one failing section keeps the others' numbers."""
    try:
        return function()
    except Exception as error:
        traceback.print_exc()
        return {"error": f"{type(error).__name__}: {' '.join(str(error).split())}"[:300]}


def write_benchmarks(path: Path, table: str) -> None:
    """Replace the text between the gpu-check markers of `path` (appended at the end when absent)."""
    text = path.read_text()
    section = f"{MARKERS[0]}\n{table}\n{MARKERS[1]}"
    pattern = re.compile(re.escape(MARKERS[0]) + ".*?" + re.escape(MARKERS[1]), re.DOTALL)
    path.write_text(
        pattern.sub(lambda _: section, text) if pattern.search(text) else f"{text.rstrip()}\n\n{section}\n"
    )


def failed(result: dict) -> bool:
    """Whether a test failed or a section (or one of its steps) stopped with an error."""
    throughput = result["throughput"]
    parts = [
        result["kernels"],
        result["sequence_parallel"],
        *(throughput if isinstance(throughput, list) else [throughput]),
    ]
    return result["test_gpu"]["returncode"] != 0 or any(
        isinstance(part, dict) and "error" in part for part in parts
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="the same code on the CPU at toy sizes")
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--benchmarks", type=Path, help="replace this file's gpu-check section by the tables")
    args = parser.parse_args(argv)
    device = "cpu" if args.dry_run else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device: run on a GPU machine, or --dry-run for the CPU rehearsal")
    liger = device == "cuda"  # Liger's Triton kernels need CUDA; flex has no CPU backward: sdpa stands in
    long, short = (256, 128) if args.dry_run else (131072, 32768)
    small, large = ("toy", "toy") if args.dry_run else ("llama3-1b", "llama3-8b")
    flex = "flex_attention" if device == "cuda" else "sdpa"
    steps = [
        (small, long, VARLEN_ATTENTION, True),
        (small, long, flex, True),
        (large, short, VARLEN_ATTENTION, False),
    ]
    result = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "CPU (dry run)",
        "versions": versions(),
        "test_gpu": gpu_tests(),
        "kernels": run_section("kernels", lambda: attention_kernels(device, long, args.steps)),
        "throughput": run_section(
            "throughput",
            lambda: [bench.throughput(*step[:3], device, args.steps, step[3], liger=liger) for step in steps],
        ),
        "sequence_parallel": run_section(
            "sequence_parallel",
            lambda: sequence_parallel_path(
                device, "toy" if args.dry_run else "small", short if args.dry_run else 8192, 2, args.steps
            ),
        ),
    }
    result["markdown"] = markdown(result)
    print(result["markdown"])
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
    if args.benchmarks:
        write_benchmarks(args.benchmarks, result["markdown"])
    return result


if __name__ == "__main__":
    sys.exit(1 if failed(main()) else 0)
