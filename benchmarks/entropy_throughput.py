"""Throughput and peak memory of the entropy and verification stages against the naive way, in one run.

Entropy: `next_token_entropy` (transformer body once, LM head + fp32 entropy `chunk_size` positions at a time)
vs. the full `[batch, seq, vocab]` logits upcast to fp32. Verification: `context_entropy` (each candidate once,
sequence cut after its last position, LM head only at the verified rows, candidates batched) vs. one full
forward with full fp32 logits over [candidate; whole root] per candidate. Each pair gets the same random token
ids, and both rows of a pair are measured in this same run, so their ratios are comparable.

Peak memory is what the call adds on top of the loaded model: on the CPU the process's peak resident set
(VmHWM, reset through /proc/self/clear_refs before each call) minus its resident set before the call; on CUDA
`torch.cuda.max_memory_allocated` minus the memory allocated before the call.

    python benchmarks/entropy_throughput.py                      # embedded SmolLM2-135M, float32, CPU
    python benchmarks/entropy_throughput.py --device cuda --dtype bfloat16 --seq 8192

Prints a Markdown table.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from transformers import HfArgumentParser

from hf_entropylong.entropy import entropy_from_logits, next_token_entropy
from hf_entropylong.models import EMBEDDED_LM, load_causal_lm
from hf_entropylong.verify import context_entropy


@dataclass
class BenchmarkArguments:
    model: str = field(default=EMBEDDED_LM, metadata={"help": "Causal LM (Hub id, path or embedded name)."})
    device: str = field(default="cpu", metadata={"help": "cpu or cuda."})
    dtype: str = field(default="float32", metadata={"help": "float32 or bfloat16."})
    batch: int = field(default=2, metadata={"help": "Entropy: sequences per forward."})
    seq: int = field(
        default=1024, metadata={"help": "Entropy: tokens per sequence; verification: root tokens."}
    )
    chunk_sizes: list[int] = field(
        default_factory=lambda: [1024, 128], metadata={"help": "Positions per LM-head chunk (one row each)."}
    )
    candidates: int = field(default=8, metadata={"help": "Verification: candidates per root."})
    context_tokens: int = field(default=256, metadata={"help": "Verification: tokens per candidate."})
    positions: int = field(default=3, metadata={"help": "Verification: positions per candidate."})
    verify_batch_sizes: list[int] = field(
        default_factory=lambda: [8, 1],
        metadata={"help": "Verification: sequences per forward (one row each)."},
    )
    repeats: int = field(default=2, metadata={"help": "Timed calls per row (the median is reported)."})


def _rss_mib(key: str) -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(key)) / 1024


def peak_memory_mib(function: Callable[[], object], device: str) -> float:
    """Memory (MiB) that one call of `function` adds at its peak, above what was held before it."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        function()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # resets VmHWM to the current resident set
    before = _rss_mib("VmRSS")
    function()
    return _rss_mib("VmHWM") - before


def median_seconds(function: Callable[[], object], device: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


@torch.inference_mode()
def naive_entropy(model, ids: torch.Tensor) -> torch.Tensor:
    return entropy_from_logits(model(ids).logits.float())


@torch.inference_mode()
def naive_verify(model, contexts: list[list[int]], root: list[int], positions: list[list[int]]) -> list:
    out = []
    for context, wanted in zip(contexts, positions, strict=True):
        logits = model(torch.tensor([context + root], device=model.device)).logits[0].float()
        out.append(entropy_from_logits(logits)[[len(context) + p - 1 for p in wanted]].cpu())
    return out


def main(argv: list[str] | None = None) -> list[tuple]:
    (args,) = HfArgumentParser(BenchmarkArguments).parse_args_into_dataclasses(args=argv)
    model = load_causal_lm(args.model, dtype=args.dtype, device=args.device)
    vocab = model.config.vocab_size
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (args.batch, args.seq), generator=generator)
    root = torch.randint(0, vocab, (args.seq,), generator=generator).tolist()
    contexts = [
        torch.randint(0, vocab, (args.context_tokens,), generator=generator).tolist()
        for _ in range(args.candidates)
    ]
    # High-entropy positions are spread over the whole root: a few random ones per candidate.
    positions = [
        sorted(torch.randperm(args.seq - 1, generator=generator)[: args.positions].add(1).tolist())
        for _ in contexts
    ]
    entropy_tokens = args.batch * args.seq
    verify_tokens = args.candidates * (args.context_tokens + args.seq)
    cases = [
        ("entropy", "full fp32 logits", entropy_tokens, lambda: naive_entropy(model, ids.to(model.device)))
    ]
    for chunk_size in args.chunk_sizes:
        cases.append(
            (
                "entropy",
                f"next_token_entropy, chunk {chunk_size}",
                entropy_tokens,
                lambda chunk_size=chunk_size: next_token_entropy(model, ids, chunk_size=chunk_size),
            )
        )
    cases += [
        (
            "verify",
            "full forward per candidate",
            verify_tokens,
            lambda: naive_verify(model, contexts, root, positions),
        ),
    ]
    for batch_size in args.verify_batch_sizes:
        cases.append(
            (
                "verify",
                f"context_entropy, batch {batch_size}",
                verify_tokens,
                lambda batch_size=batch_size: context_entropy(
                    model, contexts, root, positions, batch_size=batch_size
                ),
            )
        )
    next_token_entropy(model, ids[:, :16])  # warm-up (and the one-time head check)
    rows = []
    for stage, method, tokens, function in cases:
        peak = peak_memory_mib(function, args.device)
        seconds = median_seconds(function, args.device, args.repeats)
        rows.append((stage, method, tokens / seconds, peak, seconds))

    device = (
        torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else f"CPU ({torch.get_num_threads()} threads)"
    )
    print(
        f"\n{args.model} ({args.dtype}) on {device}. Entropy: {args.batch} × {args.seq} tokens. Verification: "
        f"{args.candidates} candidates × {args.context_tokens} tokens, {args.positions} positions each, root of "
        f"{args.seq} tokens (tokens/s counts [candidate; root] tokens)."
    )
    print(
        "| stage | method | tokens/s | seconds | peak MiB above the model | speed vs naive | memory vs naive |"
    )
    print("|---|---|---|---|---|---|---|")
    for stage, method, rate, peak, seconds in rows:
        naive = next(row for row in rows if row[0] == stage)  # the first row of a stage is the naive way
        print(
            f"| {stage} | {method} | {rate:,.0f} | {seconds:.2f} | {peak:,.0f} | {naive[4] / seconds:.2f}× "
            f"| {peak / naive[3]:.2f}× |"
        )
    return rows


if __name__ == "__main__":
    main()
