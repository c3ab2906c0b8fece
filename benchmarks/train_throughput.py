"""Training-side benchmark: varlen equivalence and long-context throughput of the CPT training step.

1. Equivalence. A small Llama (random weights) runs one packed batch (`PackedCollator`: per-unit
   `position_ids`, no mask) through every attention implementation available on the device; each is compared
   with the CPU reference — sdpa with the block-diagonal mask in float32 — by ‖out − ref‖ / ‖ref‖ over the
   logits, and each unit's logits inside the packed row are compared with the same unit run alone.
2. Throughput. A Llama-3-style model (config only, random weights, bf16) runs the CPT step exactly as
   `train cpt` does — `PackedCollator`, TRL's fused chunked LM head and loss, activation checkpointing — on one
   packed row of 32K and 128K tokens (units of 1K-16K tokens). `llama3-1b` (Llama-3.2-1B shape) runs the full
   step with AdamW; `llama3-8b` (Llama-3-8B shape) runs forward + backward only (its AdamW state would not fit
   one GPU). Reported: tokens/s, step time, peak memory, and MFU = model FLOPs / time / peak bf16 FLOP/s, with
   model FLOPs = 6 × (matmul params) × tokens + 12 × layers × hidden × (attended query-key pairs), the
   recomputation of checkpointing not counted.

    python benchmarks/train_throughput.py                 # on a GPU: all of the above
    python benchmarks/train_throughput.py --quick         # CPU smoke run at toy sizes
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
import traceback

import torch
from gpu_report import throughput_table
from transformers import LlamaConfig, LlamaForCausalLM
from trl.trainer.utils import add_fused_lm_head

from hf_entropylong.train.config import apply_liger_kernels
from hf_entropylong.train.spans import PackedCollator
from hf_entropylong.train.varlen import VARLEN_ATTENTION, register_varlen_attention

PEAK_BF16 = {"H100": 989.4e12, "H200": 989.4e12, "A100": 312e12}
SHAPES = {
    "llama3-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                      num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True),
    "llama3-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False),
    "small": dict(hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=8,
                  num_key_value_heads=2, vocab_size=8192, tie_word_embeddings=True),
    "toy": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=1024, tie_word_embeddings=True),
}  # fmt: skip


def available_attention(device: str) -> list[str]:
    impls = ["sdpa", "eager"] if device == "cpu" else ["sdpa", "flex_attention"]
    impls.append(VARLEN_ATTENTION)  # torch's varlen kernel on GPU, per-span sdpa on CPU
    if device != "cpu":
        try:
            import flash_attn  # noqa: F401

            impls.append("flash_attention_2")
        except ImportError:
            pass
    return impls


def unit_spans(length: int, low: int, high: int, seed: int = 0) -> list[int]:
    """Random unit lengths in [low, high] filling `length` exactly (the last one takes the remainder)."""
    rng, spans = random.Random(seed), []
    while sum(spans) < length:
        spans.append(min(rng.randint(low, high), length - sum(spans)))
    return spans


def packed_batch(spans: list[int], vocab: int, rows: int = 1, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    examples = [
        {
            "input_ids": torch.randint(0, vocab, (sum(spans),), generator=generator).tolist(),
            "seq_lengths": spans,
        }
        for _ in range(rows)
    ]
    return PackedCollator(pad_token_id=0)(examples)


def llama(shape: str, attn: str, dtype, device: str, max_positions: int) -> LlamaForCausalLM:
    config = LlamaConfig(
        **SHAPES[shape],
        max_position_embeddings=max_positions,
        rope_parameters={"rope_type": "default", "rope_theta": 2e8},
    )
    config.use_cache = False
    if attn == VARLEN_ATTENTION:
        register_varlen_attention()
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype)
    model.config._attn_implementation = attn
    return model


def to(batch: dict, device: str) -> dict:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.double().cpu(), ref.double().cpu()
    return float((out - ref).norm() / ref.norm())


def equivalence(device: str, length: int) -> list[dict]:
    """Each attention path on `device` against the CPU float32 block-diagonal reference."""
    spans = unit_spans(length, length // 16, length // 4, seed=1)
    batch = packed_batch(spans, SHAPES["toy"]["vocab_size"] * 8, rows=2)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        reference = llama("small", "sdpa", torch.float32, "cpu", length)(**inputs).logits.float()
    rows = []
    for attn in available_attention(device):
        for dtype in (torch.float32, torch.bfloat16):
            if attn in ("flash_attention_2", VARLEN_ATTENTION) and dtype == torch.float32 and device != "cpu":
                continue
            model = llama("small", attn, dtype, "cpu", length).to(device)  # same weights as the CPU reference
            with torch.no_grad():
                packed = model(**to(inputs, device)).logits.float()
                start, worst = 0, 0.0
                for span in spans:
                    ids = batch["input_ids"][:, start : start + span].to(device)
                    alone = model(input_ids=ids).logits.float()[0]
                    worst = max(worst, relative_error(packed[0, start : start + span], alone))
                    start += span
            rows.append(
                {
                    "attention": attn,
                    "dtype": str(dtype).removeprefix("torch."),
                    "vs_cpu_fp32_block_diagonal": relative_error(packed, reference),
                    "unit_in_row_vs_alone": worst,
                }
            )
            print(f"equivalence {rows[-1]}", flush=True)
    return rows


def model_flops(config: LlamaConfig, spans: list[int]) -> float:
    tokens = sum(spans)
    hidden, layers = config.hidden_size, config.num_hidden_layers
    kv = config.num_key_value_heads * (hidden // config.num_attention_heads)
    per_layer = hidden * hidden * 2 + hidden * kv * 2 + 3 * hidden * config.intermediate_size
    matmul_params = layers * per_layer + config.vocab_size * hidden
    attended = sum(s * (s + 1) // 2 for s in spans)
    return 6 * matmul_params * tokens + 12 * layers * hidden * attended


def throughput(
    shape: str, length: int, attn: str, device: str, steps: int, optimizer: bool, liger: bool = False
) -> dict:
    """One CPT step of `shape` on a packed row of `length` tokens, timed over `steps` steps after a warm-up one;
    `liger` swaps in Liger's RoPE/RMSNorm/SwiGLU kernels (`liger_kernels` of the recipes)."""
    spans = unit_spans(length, min(1024, length // 8), min(16384, length // 2))
    row = {
        "model": shape,
        "length": length,
        "attention": f"{attn} + liger" if liger else attn,
        "step": "fwd+bwd+AdamW" if optimizer else "fwd+bwd",
    }
    model = None
    try:
        model = llama(shape, attn, torch.bfloat16, device, length)
        if liger:
            apply_liger_kernels(model)
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        model.train()
        add_fused_lm_head(model)
        opt = (
            torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.95), fused=device != "cpu")
            if optimizer
            else None
        )
        batch = to(packed_batch(spans, model.config.vocab_size), device)
        times = []
        for step in range(steps + 1):
            if device != "cpu":
                torch.cuda.synchronize()
                if step == 1:
                    torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            out = model(**batch, fused_lm_head=True)
            loss = -out.log_probs.sum() / out.label_mask.sum()
            loss.backward()
            if opt is not None:
                opt.step()
            model.zero_grad(set_to_none=True)
            if device != "cpu":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        step_time = sorted(times[1:])[len(times[1:]) // 2]
        name = torch.cuda.get_device_name() if device != "cpu" else platform.processor() or "cpu"
        peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
        flops = model_flops(model.config, spans)
        row.update(
            units=len(spans),
            step_s=round(step_time, 3),
            tokens_per_s=round(length / step_time),
            peak_mem_gib=round(torch.cuda.max_memory_allocated() / 2**30, 1) if device != "cpu" else None,
            tflops=round(flops / step_time / 1e12, 1),
            mfu=round(flops / step_time / peak, 3) if peak else None,
            loss=round(float(loss), 3),
        )
    except torch.OutOfMemoryError as error:
        row.update(error=f"OOM: {str(error).splitlines()[0][:120]}")
    except Exception as error:  # one broken step keeps the other rows of the run
        traceback.print_exc()
        row.update(error=f"{type(error).__name__}: {' '.join(str(error).split())[:200]}")
    finally:
        del model
        if device != "cpu":
            torch.cuda.empty_cache()
    print(f"throughput {row}", flush=True)
    return row


def markdown(result: dict) -> str:
    lines = [f"Device: {result['device']} · torch {result['torch']} · transformers {result['transformers']} · "
             f"flash-attn {result['flash_attn'] or 'not installed'}", "",
             "| attention | dtype | ‖packed − CPU fp32 block-diagonal‖/‖ref‖ | worst unit-in-row vs unit alone |",
             "|---|---|---|---|"]  # fmt: skip
    for r in result["equivalence"]:
        lines.append(
            f"| {r['attention']} | {r['dtype']} | {r['vs_cpu_fp32_block_diagonal']:.2e} | {r['unit_in_row_vs_alone']:.2e} |"
        )
    return "\n".join(lines + ["", throughput_table(result["throughput"])])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="toy sizes, any device (smoke run)")
    parser.add_argument("--lengths", type=int, nargs="*", default=[32768, 131072])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        import flash_attn

        flash_version = flash_attn.__version__
    except ImportError:
        flash_version = None
    import transformers

    result = {
        "device": torch.cuda.get_device_name() if device == "cuda" else f"CPU ({platform.processor()})",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "flash_attn": flash_version,
        "equivalence": equivalence(device, 256 if args.quick else 4096),
        "throughput": [],
    }
    if args.quick:
        plan = [("toy", 512, attn, True) for attn in available_attention(device)]
    else:
        varlen = [a for a in available_attention(device) if a != "sdpa"]
        plan = [("llama3-1b", n, a, True) for n in args.lengths for a in varlen]
        plan += [("llama3-1b", min(args.lengths), "sdpa", True)]
        plan += [("llama3-8b", n, a, False) for n in args.lengths for a in varlen]
    for shape, length, attn, optimizer in plan:
        result["throughput"].append(throughput(shape, length, attn, device, args.steps, optimizer))
    table = markdown(result)
    result["markdown"] = table
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    print(table)


if __name__ == "__main__":
    main()
