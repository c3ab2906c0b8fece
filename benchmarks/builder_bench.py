"""The builder's LM stages, measured: synthetic throughput and memory, and verification on real builds.

`--part lm`: throughput and peak memory of the entropy and verification stages against the naive way, on random
token ids. Entropy: `next_token_entropy` (body once, LM head + fp32 entropy `chunk_size` positions at a time) vs.
the full `[batch, seq, vocab]` logits upcast to fp32. Verification: `context_entropy` vs. one full forward with
full fp32 logits over [candidate; whole root] per candidate. Peak memory is what a call adds above the loaded
model (CPU: VmHWM reset through /proc/self/clear_refs; CUDA: `max_memory_allocated`).

`--part verify`: the positions and candidates of real builds (`--builds`, each a published build folder or a
`--make_long_roots` folder). Per verified (position, candidate) pair it counts the tokens of
- the naive way: one forward per pair over [candidate; whole root], logits at every token;
- the exact minimum: Σ over distinct (root, candidate) of |candidate| + last tested position (no padding);
- the former builder: each root's sequences sorted and cut into forwards of `verify_batch_size`, right-padded;
- the builder: the sequences of `VERIFY_STAGE.rows_per_call` roots sorted together, padding bounded at 10%;
- the opt-in local root window (`--root_window`).
LM-head FLOPs: 2·d·V per row, at every token for the naive way, at the verified rows for the builder, for the LM
of the build and for Llama-3-8B's head (d 4,096, V 128,256). It then verifies `--sample` random distinct
(root, candidate) pairs of each build exactly (counting the tokens the forwards really take) and with the local
root window, and prints how often the decisions agree (pairs and kept contexts: precision and recall of the
window's against the exact ones), and, for a published build, agreement with the decisions it recorded.

`--make_long_roots DIR`: joins each of `--long_roots` seed documents of the embedded corpus with its nearest
neighbours (from a Flat index of the corpus, `--index`) into roots of ~3K tokens, then runs the entropy and
retrieval stages over them with the demo's settings and saves the rows in DIR (`datasets.save_to_disk`).

    python benchmarks/builder_bench.py --part lm                        # embedded SmolLM2-135M, float32, CPU
    python benchmarks/builder_bench.py --part lm --shape llama3-8b --device cuda --dtype bfloat16 --seq 4096
    python benchmarks/builder_bench.py --make_long_roots /tmp/long-roots --index outputs/demo/.cache/index-*.faiss
    python benchmarks/builder_bench.py --part verify --builds outputs/demo /tmp/long-roots

Prints Markdown tables.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import datasets
import numpy as np
import torch
from transformers import HfArgumentParser

from hf_entropylong.index.corpus_index import load_index
from hf_entropylong.models import (
    EMBEDDED_CORPUS,
    EMBEDDED_EMBEDDER,
    EMBEDDED_LM,
    context_window,
    load_causal_lm,
    load_embedder,
    load_tokenizer,
)
from hf_entropylong.sources import load_text_source
from hf_entropylong.stages.context_scores import RootCandidates, padded_batches, verification_plan
from hf_entropylong.stages.entropy import ENTROPY_STAGE, EntropySettings
from hf_entropylong.stages.retrieval import RETRIEVAL_STAGE, RetrievalStageSettings
from hf_entropylong.stages.verify import VERIFY_STAGE, delta_i

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from scoring_helpers import (  # noqa: E402  (the tests' entropy-only views of the scoring functions)
    context_entropy,
    encode_document,
    entropy_from_logits,
    next_token_entropy,
    roots_context_entropy,
)

LLAMA3_8B_HEAD = (4096, 128_256)


@dataclass
class BenchmarkArguments:
    part: str = field(default="verify", metadata={"help": "lm (synthetic) or verify (real builds)."})
    model: str = field(default=EMBEDDED_LM, metadata={"help": "Causal LM (Hub id, path or embedded name)."})
    shape: str = field(
        default="",
        metadata={"help": "llama3-8b: a random Meta-Llama-3-8B-shaped model (toy: a 2-layer one)."},
    )
    device: str = field(default="cpu", metadata={"help": "cpu or cuda."})
    dtype: str = field(default="float32", metadata={"help": "float32 or bfloat16."})
    batch: int = field(default=2, metadata={"help": "lm: entropy sequences per forward."})
    seq: int = field(default=1024, metadata={"help": "lm: tokens per sequence; verification: root tokens."})
    chunk_sizes: list[int] = field(default_factory=lambda: [1024, 128], metadata={"help": "lm: head chunks."})
    candidates: int = field(default=8, metadata={"help": "lm: candidates per root."})
    context_tokens: int = field(default=256, metadata={"help": "lm: tokens per candidate."})
    positions: int = field(default=3, metadata={"help": "lm: positions per candidate."})
    repeats: int = field(default=2, metadata={"help": "lm: timed calls per row (the median is reported)."})
    builds: list[str] = field(default_factory=list, metadata={"help": "verify: build folders."})
    verify_batch_size: int = field(default=8, metadata={"help": "verify: sequences per forward, at most."})
    root_window: int = field(default=256, metadata={"help": "verify: the local root window measured."})
    epsilon: float = field(default=0.4, metadata={"help": "verify: ΔI threshold of a decision."})
    sample: int = field(
        default=40, metadata={"help": "verify: distinct (root, candidate) pairs run per build."}
    )
    make_long_roots: str = field(default="", metadata={"help": "Write a build of long roots to this folder."})
    index: str = field(default="", metadata={"help": "make_long_roots: a Flat index of the embedded corpus."})
    long_roots: int = field(default=6, metadata={"help": "make_long_roots: roots."})
    docs_per_root: int = field(default=24, metadata={"help": "make_long_roots: corpus documents per root."})
    seed: int = field(default=0, metadata={"help": "Sampling seed."})


def _rss_mib(key: str) -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(key)) / 1024


def peak_memory_mib(function: Callable[[], object], device: str) -> tuple[float, object]:
    """Memory (MiB) that one call of `function` adds at its peak, above what was held before it, and its result."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        result = function()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20, result
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # resets VmHWM to the current resident set
    before = _rss_mib("VmRSS")
    result = function()
    return _rss_mib("VmHWM") - before, result


def median_seconds(function: Callable[[], object], device: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


RANDOM_SHAPES = {
    "llama3-8b": dict(  # Meta-Llama-3-8B
        vocab_size=LLAMA3_8B_HEAD[1],
        hidden_size=LLAMA3_8B_HEAD[0],
        intermediate_size=14_336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
    ),
    "toy": dict(  # a CPU rehearsal of the same code
        vocab_size=1024,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    ),
}


def make_model(args: BenchmarkArguments):
    if args.shape not in RANDOM_SHAPES:
        return load_causal_lm(args.model, dtype=args.dtype, device=args.device)
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**RANDOM_SHAPES[args.shape], max_position_embeddings=8192, rope_theta=500_000.0)
    with torch.device(args.device):
        return LlamaForCausalLM(config).to(getattr(torch, args.dtype)).eval()


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


def relative_difference(outputs: list, reference: list) -> float:
    """max over the pairs of ‖output − reference‖ / ‖reference‖ (entropies at the same positions)."""
    return max(
        float(
            (torch.as_tensor(out).double() - torch.as_tensor(ref).double()).norm()
            / torch.as_tensor(ref).double().norm()
        )
        for out, ref in zip(outputs, reference, strict=True)
    )


def lm_measurements(args: BenchmarkArguments) -> dict:
    """Synthetic throughput and memory of both LM stages against the naive way, and how far each method's
    entropies are from the naive way's: `{"device", "rows": [...], "vs_naive": {method: relative difference}}`."""
    model = make_model(args)
    vocab = model.config.vocab_size
    generator = torch.Generator().manual_seed(args.seed)
    ids = torch.randint(0, vocab, (args.batch, args.seq), generator=generator)
    root = torch.randint(0, vocab, (args.seq,), generator=generator).tolist()
    contexts = [
        torch.randint(0, vocab, (args.context_tokens,), generator=generator).tolist()
        for _ in range(args.candidates)
    ]
    positions = [
        sorted(torch.randperm(args.seq - 1, generator=generator)[: args.positions].add(1).tolist())
        for _ in contexts
    ]
    entropy_tokens, verify_tokens = args.batch * args.seq, args.candidates * (args.context_tokens + args.seq)
    cases = [
        ("entropy", "full fp32 logits", entropy_tokens, lambda: naive_entropy(model, ids.to(model.device)))
    ]
    for chunk in args.chunk_sizes:
        cases.append(
            (
                "entropy",
                f"next_token_entropy, chunk {chunk}",
                entropy_tokens,
                lambda chunk=chunk: next_token_entropy(model, ids, chunk_size=chunk),
            )
        )
    cases.append(
        (
            "verify",
            "full forward per candidate",
            verify_tokens,
            lambda: naive_verify(model, contexts, root, positions),
        )
    )
    for batch_size in (args.verify_batch_size, 1):
        cases.append(
            (
                "verify",
                f"context_entropy, batch {batch_size}",
                verify_tokens,
                lambda batch_size=batch_size: context_entropy(model, contexts, root, positions, batch_size),
            )
        )
    next_token_entropy(model, ids[:, :16])  # warm-up (and the one-time head check)
    rows, outputs, vs_naive = [], {}, {}
    for stage, method, tokens, function in cases:
        try:
            peak, outputs[method] = peak_memory_mib(function, args.device)
        except torch.OutOfMemoryError:
            rows.append({"stage": stage, "method": method, "error": "out of memory"})
            torch.cuda.empty_cache()
            continue
        seconds = median_seconds(function, args.device, args.repeats)
        rows.append(
            {
                "stage": stage,
                "method": method,
                "tokens_per_s": tokens / seconds,
                "peak_mib": peak,
                "seconds": seconds,
            }
        )
    for method, output in outputs.items():
        if method.startswith("next_token_entropy") and "full fp32 logits" in outputs:
            # chunked [:, t] is the prediction of token t, the full logits' [:, t - 1] the same prediction
            naive = outputs["full fp32 logits"]
            vs_naive[method] = relative_difference(list(output[:, 1:]), list(naive[:, :-1].cpu()))
        elif method.startswith("context_entropy") and "full forward per candidate" in outputs:
            vs_naive[method] = relative_difference(output, outputs["full forward per candidate"])
    device = (
        torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else f"CPU ({torch.get_num_threads()} threads)"
    )
    return {"device": device, "rows": rows, "vs_naive": vs_naive}


def lm_part(args: BenchmarkArguments) -> None:
    """Print [`lm_measurements`] as a Markdown table."""
    measured = lm_measurements(args)
    device, rows = measured["device"], measured["rows"]
    print(
        f"\n{args.shape or args.model} ({args.dtype}) on {device}. Entropy: {args.batch} × {args.seq} tokens. "
        f"Verification: {args.candidates} candidates × {args.context_tokens} tokens, {args.positions} positions "
        f"each, root of {args.seq} tokens (tokens/s counts [candidate; root] tokens)."
    )
    print(
        "| stage | method | tokens/s | seconds | peak MiB above the model | speed vs naive | memory vs naive |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        naive = next(
            r for r in rows if r["stage"] == row["stage"]
        )  # the first row of a stage is the naive way
        if "error" in row:
            print(f"| {row['stage']} | {row['method']} | {row['error']} | | | | |")
        elif "error" in naive:
            print(f"| {row['stage']} | {row['method']} | {row['tokens_per_s']:,.0f} | {row['seconds']:.2f} "
                  f"| {row['peak_mib']:,.0f} | | |")  # fmt: skip
        else:
            print(
                f"| {row['stage']} | {row['method']} | {row['tokens_per_s']:,.0f} | {row['seconds']:.2f} "
                f"| {row['peak_mib']:,.0f} | {naive['seconds'] / row['seconds']:.2f}× "
                f"| {row['peak_mib'] / naive['peak_mib']:.2f}× |"
            )
    print("Entropies vs the naive way's (‖Δ‖/‖naive‖): " + ", ".join(
        f"{method} {difference:.1e}" for method, difference in measured["vs_naive"].items()
    ))  # fmt: skip


def make_long_roots(args: BenchmarkArguments) -> None:
    """Roots of ~3K tokens made of neighbouring corpus documents, through the entropy and retrieval stages."""
    corpus, _ = load_text_source(EMBEDDED_CORPUS, role="corpus")
    index = load_index(args.index)
    vectors = index.reconstruct_n(0, index.ntotal)
    seeds = np.random.default_rng(args.seed).choice(len(corpus), args.long_roots, replace=False)
    _, neighbours = index.search(vectors[seeds], args.docs_per_root)
    batch = {
        "id": [f"long-{seed}" for seed in seeds],
        "text": ["\n\n".join(corpus[[int(i) for i in row]]["text"]) for row in neighbours],
    }
    lm = load_causal_lm(EMBEDDED_LM, dtype="float32", device="cpu")
    embedder = load_embedder(EMBEDDED_EMBEDDER)
    embedder.max_seq_length = 128  # as recipes/build/demo.yaml
    inputs = SimpleNamespace(
        tokenizer=load_tokenizer(EMBEDDED_LM),
        lm=lm,
        lm_window=context_window(lm),
        max_seq_length=8192,
        embedder=embedder,
        embed_batch_size=64,
        index=index,
        corpus=corpus,
        same_source=False,
    )
    batch.update(ENTROPY_STAGE.function(batch, EntropySettings(), inputs))
    batch.update(RETRIEVAL_STAGE.function(batch, RetrievalStageSettings(top_k=3), inputs))
    datasets.Dataset.from_dict(batch).save_to_disk(args.make_long_roots)
    print(
        f"{len(seeds)} roots, {sum(batch['num_tokens'])} tokens, {sum(map(len, batch['positions']))} positions, "
        f"{sum(batch['num_excluded_near_duplicate'])} hits excluded as near-copies (passages of the root)"
    )


@dataclass
class BuildRoot:
    """A root of a build: its ids, its candidates' positions, baseline entropies and the recorded decisions."""

    root_ids: list[int]
    candidates: dict[int, list[int]]  # corpus index -> positions
    contexts: dict[int, list[int]]  # corpus index -> ids
    baseline: dict[int, float]
    recorded: dict[tuple[int, int], bool]  # (corpus index, position) -> verified, for a published build


def load_rows(path: str) -> datasets.Dataset:
    """The rows of a published build (its `dependencies` config) or of a `--make_long_roots` folder."""
    if (Path(path) / "dataset_info.json").exists():
        return datasets.load_from_disk(path).rename_column("text", "root_text")
    return datasets.load_dataset(path, "dependencies", split="train")


def load_build(path: str, tokenizer, corpus: datasets.Dataset) -> list[BuildRoot]:
    """The roots of a build with their candidates, tokenised."""
    rows = load_rows(path)
    tried = "candidates" if "candidates" in rows.column_names else "retrieved"
    needed = sorted({hit["corpus_index"] for hits in rows[tried] for hit in hits})
    texts = dict(zip(needed, corpus[needed]["text"], strict=True))
    roots = []
    for text, positions, hits in zip(rows["root_text"], rows["positions"], rows[tried], strict=True):
        if not hits:
            continue
        candidates: dict[int, list[int]] = {}
        for hit in hits:
            candidates.setdefault(hit["corpus_index"], []).append(hit["token_index"])
        roots.append(
            BuildRoot(
                encode_document(tokenizer, text),
                candidates,
                {c: encode_document(tokenizer, texts[c]) for c in candidates},
                {position["token_index"]: position["entropy"] for position in positions},
                {(h["corpus_index"], h["token_index"]): h["verified"] for h in hits if "verified" in h},
            )
        )
    return roots


def _requests(roots: list[BuildRoot]) -> list[RootCandidates]:
    return [RootCandidates(r.root_ids, list(r.contexts.values()), list(r.candidates.values())) for r in roots]


def forwarded_tokens(
    requests: list[RootCandidates], window: int, batch_size: int, roots_per_call: int, **plan
) -> int:
    """Tokens the builder forwards (padding included) for `requests`, `roots_per_call` roots sharing forwards."""
    total = 0
    for start in range(0, len(requests), roots_per_call):
        sequences, _ = verification_plan(requests[start : start + roots_per_call], window, **plan)
        lengths = [len(s.input_ids) for s in sequences]
        total += sum(len(b) * max(lengths[i] for i in b) for b in padded_batches(lengths, batch_size))
    return total


def former_tokens(requests: list[RootCandidates], window: int, batch_size: int) -> int:
    """Tokens of the former builder: each root's sequences sorted by length, `batch_size` per padded forward."""
    total = 0
    for request in requests:
        lengths = sorted(len(s.input_ids) for s in verification_plan([request], window)[0])
        total += sum(
            len(lengths[i : i + batch_size]) * lengths[i : i + batch_size][-1]
            for i in range(0, len(lengths), batch_size)
        )
    return total


def _decisions(roots, sample, entropies, epsilon) -> dict[tuple[int, int, int], bool]:
    out = {}
    for (number, corpus_index), values in zip(sample, entropies, strict=True):
        positions = roots[number].candidates[corpus_index]
        gains = delta_i(np.array([roots[number].baseline[p] for p in positions]), values)
        out.update(
            {(number, corpus_index, p): bool(g >= epsilon) for p, g in zip(positions, gains, strict=True)}
        )
    return out


def _precision_recall(got: set, expected: set) -> str:
    precision = len(got & expected) / len(got) if got else float("nan")
    recall = len(got & expected) / len(expected) if expected else float("nan")
    return f"{precision:.2f} / {recall:.2f}"


def verify_part(args: BenchmarkArguments) -> None:
    """Token counts of verification on real builds, and the local root window's agreement with the exact way."""
    tokenizer = load_tokenizer(args.model)
    corpus, _ = load_text_source(EMBEDDED_CORPUS, role="corpus")
    model = load_causal_lm(args.model, dtype=args.dtype, device=args.device)
    window = context_window(model)
    head = (model.config.hidden_size, model.config.vocab_size)
    forwarded = []
    model.get_decoder().register_forward_pre_hook(
        lambda _, __, kwargs: forwarded.append(kwargs["input_ids"].numel()), with_kwargs=True
    )
    token_rows, agreement_rows = [], []
    for path in args.builds:
        roots = load_build(path, tokenizer, corpus)
        requests = _requests(roots)
        pairs = sum(len(set(p)) for r in roots for p in r.candidates.values())
        naive = sum(
            len(c) + len(r.root_ids)
            for r in roots
            for ci, c in r.contexts.items()
            for _ in set(r.candidates[ci])
        )
        minimum = sum(len(s.input_ids) for s in verification_plan(requests, window)[0])
        windowed = sum(len(s.input_ids) for s in verification_plan(requests, window, args.root_window)[0])
        per_call = VERIFY_STAGE.rows_per_call
        counts = {
            "naive": naive,
            "exact minimum": minimum,
            f"former builder (per root, batch {args.verify_batch_size})": former_tokens(
                requests, window, args.verify_batch_size
            ),
            f"builder ({per_call} roots per call, batch ≤ {args.verify_batch_size})": forwarded_tokens(
                requests, window, args.verify_batch_size, per_call
            ),
            f"local root window {args.root_window}, minimum": windowed,
            f"local root window {args.root_window}, builder": forwarded_tokens(
                requests, window, args.verify_batch_size, per_call, root_window=args.root_window
            ),
        }
        root_tokens = [len(r.root_ids) for r in roots]
        name = f"{Path(path).name} ({len(roots)} roots of {np.mean(root_tokens):,.0f} tokens, {pairs} pairs)"
        for method, tokens in counts.items():
            token_rows.append((name, method, tokens, tokens / pairs, tokens / minimum))
        naive_rows = naive / pairs  # per pair: full logits at every token; the builder takes one row per pair
        flops = ", ".join(
            f"{label} head {2 * naive_rows * d * v:.3g} vs {2 * d * v:.3g}"
            for label, (d, v) in (("the build's LM", head), ("Llama-3-8B", LLAMA3_8B_HEAD))
        )
        print(f"{name}: LM-head FLOPs per pair, naive vs builder: {flops} ({naive_rows:,.0f}× fewer)")
        if not args.sample:
            continue
        # Run a random sample of distinct (root, candidate) pairs exactly and with the local root window.
        everything = [(number, c) for number, r in enumerate(roots) for c in r.candidates]
        sample = random.Random(args.seed).sample(everything, min(args.sample, len(everything)))
        sample_requests = [
            RootCandidates(roots[n].root_ids, [roots[n].contexts[c]], [roots[n].candidates[c]])
            for n, c in sample
        ]
        results = {}
        for label, root_window in (("exact", None), ("window", args.root_window)):
            forwarded.clear()
            start = time.perf_counter()
            entropies = [  # all run together, as the builder runs the roots of a call
                per_root[0]
                for per_root in roots_context_entropy(
                    model, sample_requests, args.verify_batch_size, root_window=root_window
                )
            ]
            results[label] = (
                _decisions(roots, sample, entropies, args.epsilon),
                time.perf_counter() - start,
                sum(forwarded),
            )
        exact, window_run = results["exact"][0], results["window"][0]
        kept_exact = {key for key, ok in exact.items() if ok}
        kept_window = {key for key, ok in window_run.items() if ok}
        contexts_exact = {key[:2] for key in kept_exact}
        contexts_window = {key[:2] for key in kept_window}
        recorded = {(n, c, p): roots[n].recorded[(c, p)] for n, c, p in exact if (c, p) in roots[n].recorded}
        agreement_rows.append(
            (
                name,
                len(sample),
                len(exact),
                len(kept_exact),
                f"{sum(exact[k] == recorded[k] for k in recorded)}/{len(recorded)}" if recorded else "–",
                f"{sum(exact[k] == window_run[k] for k in exact)}/{len(exact)}",
                _precision_recall(kept_window, kept_exact),
                _precision_recall(contexts_window, contexts_exact),
                results["exact"][2],
                results["window"][2],
                results["exact"][1],
                results["window"][1],
            )
        )
    print(f"\nVerification tokens per build ({args.model}, window {window}):")
    print("| build | method | tokens | tokens per pair | vs exact minimum |")
    print("|---|---|---|---|---|")
    for name, method, tokens, per_pair, ratio in token_rows:
        print(f"| {name} | {method} | {tokens:,} | {per_pair:,.0f} | {ratio:.3f}× |")
    print(f"\nExact vs local root window {args.root_window} on a sample of distinct (root, candidate) pairs:")
    print(
        "| build | (root, candidate) | (position, candidate) pairs | kept exactly | exact = recorded | window = exact "
        "| pairs kept: precision / recall | contexts kept: precision / recall | tokens exact | tokens window "
        "| s exact | s window |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in agreement_rows:
        print(
            "| "
            + " | ".join(
                f"{v:,}" if isinstance(v, int) else f"{v:.1f}" if isinstance(v, float) else v for v in row
            )
            + " |"
        )


def main(argv: list[str] | None = None) -> None:
    (args,) = HfArgumentParser(BenchmarkArguments).parse_args_into_dataclasses(args=argv)
    if args.make_long_roots:
        make_long_roots(args)
    elif args.part == "lm":
        lm_part(args)
    else:
        verify_part(args)


if __name__ == "__main__":
    main()
