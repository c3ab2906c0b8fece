"""Throughput and memory of the two LM stages of the builder, against the naive way, in one run.

Entropy: `next_token_entropy` (body once, LM head in chunks) vs. full `[batch, seq, vocab]` logits upcast to
fp32. Verification: `context_entropy` (each candidate once, sequence cut after the last position, LM head only
at the verified rows) vs. a full forward with full logits over [candidate; whole root] per candidate.

    python benchmarks/builder_throughput.py                       # embedded SmolLM2 on the CPU
    python benchmarks/builder_throughput.py --shape llama3-8b     # random Llama-3-8B-shaped model (GPU)

Prints a Markdown table (tokens/s, peak memory, ratio to the naive way).
"""

from __future__ import annotations

import argparse
import time

import torch

from hf_entropylong.entropy import entropy_from_logits, next_token_entropy
from hf_entropylong.models import EMBEDDED_LM, load_causal_lm
from hf_entropylong.verify import context_entropy


def make_model(shape: str, device: str, dtype: torch.dtype):
    if shape == "embedded":
        return load_causal_lm(EMBEDDED_LM, dtype=dtype, device=device)
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(  # Meta-Llama-3-8B
        vocab_size=128_256,
        hidden_size=4096,
        intermediate_size=14_336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=8192,
        rope_theta=500_000.0,
    )
    with torch.device(device):
        return LlamaForCausalLM(config).to(dtype).eval()


def measure(function, device: str, repeats: int) -> tuple[float, float]:
    """Median seconds and peak memory (GiB; CUDA only, else NaN) of `function()`; NaN seconds when out of memory."""
    try:
        function()  # warm-up
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        return float("nan"), float("nan")
    times = []
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
    return sorted(times)[len(times) // 2], peak


@torch.inference_mode()
def naive_entropy(model, ids):
    return entropy_from_logits(model(ids).logits.float())


@torch.inference_mode()
def naive_verify(model, contexts, root, positions):
    out = []
    for context, wanted in zip(contexts, positions, strict=True):
        logits = model(torch.tensor([context + root], device=model.device)).logits[0].float()
        out.append(entropy_from_logits(logits[[len(context) + p - 1 for p in wanted]]))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=["embedded", "llama3-8b"], default="embedded")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--candidates", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    model = make_model(args.shape, args.device, dtype)
    vocab = model.config.vocab_size
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (args.batch, args.seq), generator=generator).to(args.device)
    root = torch.randint(0, vocab, (args.seq,), generator=generator).tolist()
    contexts = [
        torch.randint(0, vocab, (args.seq // 2,), generator=generator).tolist()
        for _ in range(args.candidates)
    ]
    # Typical EntropyLong positions: a few per candidate, spread over the root.
    positions = [sorted(torch.randint(1, args.seq, (3,), generator=generator).tolist()) for _ in contexts]

    rows = []
    entropy_tokens = args.batch * args.seq
    for name, function in (
        ("entropy, full fp32 logits", lambda: naive_entropy(model, ids)),
        ("entropy, chunked head", lambda: next_token_entropy(model, ids, chunk_size=1024)),
    ):
        seconds, peak = measure(function, args.device, args.repeats)
        rows.append((name, entropy_tokens / seconds, peak, seconds))
    verify_tokens = sum(len(c) + args.seq for c in contexts)
    for name, function in (
        ("verify, full forward per candidate", lambda: naive_verify(model, contexts, root, positions)),
        (
            "verify, context_entropy, batch 1",
            lambda: context_entropy(model, contexts, root, positions, batch_size=1),
        ),
        (
            "verify, context_entropy, batch 8",
            lambda: context_entropy(model, contexts, root, positions, batch_size=8),
        ),
    ):
        seconds, peak = measure(function, args.device, args.repeats)
        rows.append((name, verify_tokens / seconds, peak, seconds))

    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    print(
        f"\n{args.shape} ({dtype}) on {device_name}: entropy over {args.batch}×{args.seq} tokens; "
        f"verification of {args.candidates} candidates of {args.seq // 2} tokens, 3 positions each, root {args.seq}"
    )
    print("| step | tokens/s (root+context tokens) | peak GiB | seconds | speed-up vs naive |")
    print("|---|---|---|---|---|")
    for i, (name, rate, peak, seconds) in enumerate(rows):
        if seconds != seconds:  # NaN: out of memory
            print(f"| {name} | out of memory | | | |")
            continue
        reference = rows[0 if i < 2 else 2][3]
        print(f"| {name} | {rate:,.0f} | {peak:.2f} | {seconds:.3f} | {reference / seconds:.2f}× |")


if __name__ == "__main__":
    main()
