"""`hf-entropylong eval attention MODEL [MODEL ...]`: how much attention the question pays to the answer (§6.6).

    hf-entropylong eval attention embedded:SmolLM2-135M-Instruct outputs/cpt/final \
        --lengths 1024 2048 4096 8192 --depths 0 25 50 75 100 --samples 5

The EntropyLong paper's attention analysis builds sequences from an answer, a question and irrelevant
text, and compares two models on the attention the question pays to the answer (a) as the context grows
with the answer at the front, and (b) with the answer at 0/25/50/75/100% of the sequence ("lost in the
middle"), reporting the relative gain of one model over the other. Its code is not released; here:

- **Probe.** The answer is a RULER needle ("One of the special magic numbers for <adjective-noun> is:
  <7 digits>."), the irrelevant text the essay haystack (`--haystack`, RULER's PaulGrahamEssays.json or
  JSON lines; default the embedded Wikipedia summaries) cut at sentence boundaries, and the question
  ("What is the special magic number for <key> mentioned in the provided text?") ends the sequence. The
  haystack grows until the sequence has the length in the model's tokens; the answer goes after the
  given share of the haystack's sentences.
- **Score.** Per layer: the attention weights from each question token to the answer's tokens, summed
  over the answer and averaged over the question's tokens and all heads. The sequence's first token never
  counts as answer: models park much of their attention on it whatever it holds (the attention sink), so
  without a BOS token an answer at the front would otherwise measure the sink. A model's score for a cell is
  the mean over layers and probes (the per-layer means are kept too).
- **Cost.** Nothing of size length × length is built. An attention function registered with transformers'
  `AttentionInterface` receives each layer's rotated queries and keys: it scores only the question's
  rows against all keys (causal, softmax in float32, as the eager implementation), records the answer's
  share, and hands the full computation to SDPA (flash/memory-efficient kernels). The LM head runs on the
  last position only. Memory beyond the forward itself: heads × question tokens × length floats, so
  lengths up to 128K fit on one GPU. Softmax attention without logit soft-capping, sinks or a sliding
  window (Llama, and Qwen/Mistral configurations without a window): other models are refused in one line.
- **Axis.** The paper plots the answer's distance from the question; `--depths` place the answer at a share
  of the haystack from the front, so depth d is the paper's distance 100 − d (depth 0, the length sweep's
  placement, is the paper's 100%: the answer as far from the question as it can be). Tables and plots are
  labelled with the paper's distance, the depth beside it.

Output: `<output_dir>/attention.json` (per model, per length and per depth: the per-layer values and their
mean; the relative gains of the first model over each other one), `attention_vs_length.png` and
`attention_vs_depth.png` (the models side by side); the gains are printed as the paper does (+x.x%).
"""

from __future__ import annotations

import json
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..models import EMBEDDED_CORPUS, default_device, load_causal_lm, load_tokenizer
from .haystack import essay_words, haystack_name, haystack_texts, split_sentences
from .ruler_constants import DEFAULT_SEED, NEEDLE
from .ruler_tasks import largest_fitting, repeat_words, word_key
from .runner import check_window

PROBE_ATTENTION = "entropylong_probe"
QUESTION = "\nWhat is the special magic number for {key} mentioned in the provided text?"


@dataclass
class AttentionArguments:
    """Options of `hf-entropylong eval attention` (the models are the leading positional arguments)."""

    models: list[str] = field(
        default_factory=list, metadata={"help": "Models to compare (first: the one gains are of)."}
    )
    lengths: list[int] = field(
        default_factory=lambda: [1024, 2048, 4096, 8192],
        metadata={"help": "Sequence lengths in tokens for the length sweep (answer at the front)."},
    )
    depths: list[int] = field(
        default_factory=lambda: [0, 25, 50, 75, 100],
        metadata={
            "help": "Answer depths in percent from the front (the paper's axis, the answer's distance from the "
            "question, is 100 - depth)."
        },
    )
    depth_length: int | None = field(
        default=None, metadata={"help": "Sequence length of the depth sweep (default: the largest length)."}
    )
    samples: int = field(default=5, metadata={"help": "Probes (keys, values) per cell."})
    haystack: str = field(
        default=EMBEDDED_CORPUS,
        metadata={"help": "Irrelevant text: RULER's PaulGrahamEssays.json, or JSON lines with 'text'."},
    )
    seed: int = field(
        default=DEFAULT_SEED, metadata={"help": "Probe i of a cell depends only on (seed, cell, i)."}
    )
    dtype: str = field(
        default_factory=lambda: "bfloat16" if default_device() == "cuda" else "float32",
        metadata={"help": "Model dtype (default: bfloat16 on a GPU, float32 on the CPU)."},
    )
    output_dir: str = field(default="outputs/eval/attention", metadata={"help": "Where results are written."})

    def __post_init__(self):
        if not self.models:
            raise ValueError("Give one or more models: hf-entropylong eval attention MODEL [MODEL ...].")
        if self.samples < 1 or not self.lengths or min(self.lengths) < 64:
            raise ValueError(
                f"--samples must be positive and --lengths at least 64 tokens, got {self.samples}, {self.lengths}."
            )
        if not self.depths or not all(0 <= depth <= 100 for depth in self.depths):
            raise ValueError(f"--depths are percents from 0 to 100, got {self.depths}.")
        self.depth_length = self.depth_length or max(self.lengths)


@dataclass
class Probe:
    """One probe sequence: its token ids, the question's positions (rows) and the answer's (columns)."""

    input_ids: list[int]
    rows: list[int]
    columns: list[int]
    per_layer: dict[int, float] = field(default_factory=dict)


def _token_span(offsets: list[tuple[int, int]], start: int, end: int) -> list[int]:
    return [i for i, (a, b) in enumerate(offsets) if b > a and a < end and b > start]


def build_probe(tokenizer, sentences: list[str], depth: int, key: str, value: str) -> Probe:
    """The sequence `haystack[:depth%] answer haystack[depth%:] question` with its answer and question spans."""
    answer = NEEDLE.format(type_needle_v="numbers", key=key, value=value)
    cut = int(len(sentences) * depth / 100)
    before, after = " ".join(sentences[:cut]), " ".join(sentences[cut:])
    text = " ".join(part for part in (before, answer, after) if part)
    start = text.index(answer)
    question = QUESTION.format(key=key)
    text += question
    encoding = tokenizer(text, return_offsets_mapping=True)
    offsets = encoding["offset_mapping"]
    return Probe(
        input_ids=encoding["input_ids"],
        rows=_token_span(offsets, len(text) - len(question) + 1, len(text)),
        columns=[i for i in _token_span(offsets, start, start + len(answer)) if i > 0],  # not the sink
    )


def fitted_probe(tokenizer, words: tuple[str, ...], length: int, depth: int, key: str, value: str) -> Probe:
    """The probe with the most haystack words that keeps it within `length` tokens."""

    def make(size: int) -> Probe:
        return build_probe(tokenizer, split_sentences(" ".join(repeat_words(words, size))), depth, key, value)

    return make(largest_fitting(lambda size: len(make(size).input_ids) <= length, 1, 10**9))


def probes_for(tokenizer, length: int, depth: int, samples: int, haystack: str, seed: int) -> list[Probe]:
    """`samples` probes of at most `length` tokens with the answer at `depth`%, each with its own key and value."""
    probes = []
    for index in range(samples):
        rng = random.Random(f"{seed}/attention/{length}/{depth}/{index}")
        key, value = word_key(rng), str(rng.randint(1_000_000, 9_999_999))
        probes.append(fitted_probe(tokenizer, essay_words(haystack), length, depth, key, value))
    return probes


def probe_attention(
    module, query, key, value, attention_mask, attention_probe: Probe | None = None, **kwargs
):
    """SDPA attention that also records, for `attention_probe`, the question rows' attention to the answer."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if attention_probe is not None:
        if kwargs.get("softcap") is not None or getattr(module, "sinks", None) is not None:
            raise ValueError(
                "eval attention measures plain softmax attention: this model uses soft-capping or sinks."
            )
        if kwargs.get("sliding_window") is not None:
            raise ValueError(
                f"eval attention measures full causal attention: this model's layer {module.layer_idx} uses "
                f"sliding-window attention (window {kwargs['sliding_window']}); such models are not supported."
            )
        rows = torch.tensor(attention_probe.rows, device=query.device)
        batch, heads, _, dim = query.shape
        groups = heads // key.shape[1]
        q = query[:, :, rows].float().reshape(batch, key.shape[1], groups, len(rows), dim)
        scores = q @ key.float().transpose(-1, -2).unsqueeze(2) * kwargs.get("scaling", dim**-0.5)
        future = torch.arange(key.shape[2], device=query.device)[None, :] > rows[:, None]
        weights = scores.masked_fill(future, float("-inf")).softmax(dim=-1)
        answer = weights[..., attention_probe.columns].sum(dim=-1)
        attention_probe.per_layer[module.layer_idx] = answer.mean().item()
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def _register() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(PROBE_ATTENTION, probe_attention)


@torch.no_grad()
def measure(model, probes: list[Probe]) -> dict:
    """Run each probe through `model` (set to `PROBE_ATTENTION`): per-layer mean and overall mean."""
    device = next(model.parameters()).device
    for probe in probes:
        model(
            torch.tensor([probe.input_ids], device=device),
            attention_probe=probe,
            logits_to_keep=1,
            use_cache=False,
        )
    layers = sorted(probes[0].per_layer)
    per_layer = [sum(p.per_layer[layer] for p in probes) / len(probes) for layer in layers]
    return {
        "per_layer": per_layer,
        "mean": sum(per_layer) / len(per_layer),
        "tokens": [len(p.input_ids) for p in probes],
    }


def measure_model(name: str, args: AttentionArguments) -> dict:
    """One model over the length sweep (answer at the front) and the depth sweep (at `depth_length`)."""
    tokenizer = load_tokenizer(name)
    model = load_causal_lm(name, dtype=args.dtype, attn_implementation=PROBE_ATTENTION)
    settings = (args.samples, args.haystack, args.seed)
    return {
        "by_length": {str(n): measure(model, probes_for(tokenizer, n, 0, *settings)) for n in args.lengths},
        "by_depth": {
            str(d): measure(model, probes_for(tokenizer, args.depth_length, d, *settings))
            for d in args.depths
        },
    }


def relative_gain(a: float, b: float) -> float:
    """(a - b) / b in percent: how much more attention model a pays than model b."""
    return 100 * (a - b) / b if b else float("inf")


def evaluate(args: AttentionArguments) -> dict:
    """Measure every model over the length sweep (depth 0) and the depth sweep; write JSON and plots."""
    haystack_texts(args.haystack)  # fail early on a missing or malformed haystack
    lengths = sorted(set(args.lengths) | {args.depth_length})
    for name in args.models:
        check_window(name, lengths)
    _register()
    results, start = {}, time.perf_counter()
    for name in args.models:
        results[name] = measure_model(name, args)
    first, *others = args.models
    gains = {
        other: {
            sweep: {
                cell: round(
                    relative_gain(results[first][sweep][cell]["mean"], results[other][sweep][cell]["mean"]), 1
                )
                for cell in results[first][sweep]
            }
            for sweep in ("by_length", "by_depth")
        }
        for other in others
    }
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "attention",
        "config": asdict(args) | {"haystack_name": haystack_name(args.haystack)},
        "results": results,
        "relative_gain": gains,
        "seconds": round(time.perf_counter() - start, 1),
    }
    (output / "attention.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    plot_sweeps(results, output, args.depth_length)
    print(summary_table(results, gains))
    print(
        f"\nHaystack {haystack_name(args.haystack)}; {args.samples} probes per cell. Results in {output}/attention.json"
    )
    return report


def _length_name(length: int) -> str:
    return f"{length // 1024}K" if length % 1024 == 0 else str(length)


def paper_distance(depth: int) -> int:
    """The paper's axis: the answer's distance from the question, in percent, of an answer at `depth`%."""
    return 100 - depth


def summary_table(results: dict, gains: dict) -> str:
    """Markdown: the mean attention to the answer per model and cell, and the first model's relative gains."""
    models = list(results)
    cells = [
        ("by_length", c, f"length {_length_name(int(c))}, distance 100%")
        for c in results[models[0]]["by_length"]
    ]
    cells += [
        ("by_depth", c, f"distance {paper_distance(int(c))}% (depth {c}%)")
        for c in results[models[0]]["by_depth"]
    ]
    header = ["cell", *models, *(f"gain vs {other}" for other in gains)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for sweep, cell, label in cells:
        values = [f"{results[m][sweep][cell]['mean']:.4f}" for m in models]
        lines.append(
            "| " + " | ".join([label, *values, *(f"{gains[o][sweep][cell]:+.1f}%" for o in gains)]) + " |"
        )
    return "\n".join(lines)


def plot_sweeps(results: dict, output: Path, depth_length: int) -> list[Path]:
    """`attention_vs_length.png` (a line per model) and `attention_vs_depth.png` (bars, models side by side)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(results)
    paths = []
    figure, axes = plt.subplots(figsize=(6.5, 4))
    for name in models:
        sweep = results[name]["by_length"]
        lengths = [int(length) for length in sweep]
        axes.plot(lengths, [sweep[str(n)]["mean"] for n in lengths], marker="o", label=name)
    axes.set_xscale("log", base=2)
    axes.set_xticks(lengths, [_length_name(n) for n in lengths])
    axes.set_xlabel("Context length (tokens), answer at the front")
    axes.set_ylabel("Attention from question to answer")
    axes.legend(fontsize=8)
    paths.append(output / "attention_vs_length.png")
    figure.tight_layout()
    figure.savefig(paths[-1], dpi=120)
    plt.close(figure)
    figure, axes = plt.subplots(figsize=(6.5, 4))
    depths = list(results[models[0]]["by_depth"])
    width = 0.8 / len(models)
    for m, name in enumerate(models):
        values = [results[name]["by_depth"][d]["mean"] for d in depths]
        axes.bar(
            [i + (m - (len(models) - 1) / 2) * width for i in range(len(depths))], values, width, label=name
        )
    axes.set_xticks(range(len(depths)), [f"{paper_distance(int(d))}%" for d in depths])
    axes.set_xlabel(
        f"Answer's distance from the question, % of the {_length_name(depth_length)} tokens (depth = 100 − distance)"
    )
    axes.set_ylabel("Attention from question to answer")
    axes.legend(fontsize=8)
    paths.append(output / "attention_vs_depth.png")
    figure.tight_layout()
    figure.savefig(paths[-1], dpi=120)
    plt.close(figure)
    return paths


def parse_args(argv: list[str] | None = None) -> AttentionArguments:
    """The leading arguments that are not options are the models; the rest are `AttentionArguments` flags."""
    from trl import TrlParser

    argv = list(sys.argv[1:] if argv is None else argv)
    count = next((i for i, arg in enumerate(argv) if arg.startswith("-")), len(argv))
    models, rest = argv[:count], argv[count:]
    parser = TrlParser((AttentionArguments,))
    if models:
        rest = ["--models", *models, *rest]
    (args,) = parser.parse_args_and_config(args=rest)
    return args


def main(argv: list[str] | None = None) -> dict:
    return evaluate(parse_args(argv))


if __name__ == "__main__":
    from hf_entropylong import cli

    cli.run(main)
