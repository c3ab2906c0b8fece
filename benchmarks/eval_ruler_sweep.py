"""RULER length sweep and NIAH heatmap of a model, with timings: the table of BENCHMARKS.md's Evaluation section.

    python benchmarks/eval_ruler_sweep.py --model embedded:SmolLM2-135M-Instruct --lengths 4096 8192 \
        --samples 20 --batch_size 16 --output_dir outputs/bench/eval

Runs `hf_entropylong.eval.ruler.evaluate` twice: on the RULER tasks (all that need no QA file unless QA
files are given), then with the `niah` command's defaults (the depth × length grid), and prints the task ×
length table, the heatmap table, the device, and the wall time of each part.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from hf_entropylong.eval.niah import NIAH_DEFAULTS
from hf_entropylong.eval.ruler import RulerArguments, evaluate
from hf_entropylong.eval.scoring import markdown_table


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="embedded:SmolLM2-135M-Instruct")
    parser.add_argument("--lengths", type=int, nargs="+", default=[4096, 8192])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--niah_lengths", type=int, nargs="*", default=[1024, 2048, 4096, 8192])
    parser.add_argument("--niah_samples", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--haystack", default=RulerArguments.haystack, help="RULER's PaulGrahamEssays.json")
    parser.add_argument("--squad_file")
    parser.add_argument("--hotpotqa_file")
    parser.add_argument("--output_dir", default="outputs/bench/eval")
    options = parser.parse_args()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    output = Path(options.output_dir)

    shared = {
        "model": options.model,
        "dtype": options.dtype,
        "batch_size": options.batch_size,
        "haystack": options.haystack,
    }

    start = time.perf_counter()
    ruler = evaluate(
        RulerArguments(
            **shared,
            lengths=options.lengths,
            samples=options.samples,
            squad_file=options.squad_file,
            hotpotqa_file=options.hotpotqa_file,
            output_dir=str(output / "ruler"),
        )
    )
    ruler_seconds = time.perf_counter() - start
    niah = None
    if options.niah_lengths:
        start = time.perf_counter()
        grid = {
            "lengths": options.niah_lengths,
            "samples": options.niah_samples,
            "output_dir": str(output / "niah"),
        }
        niah = evaluate(RulerArguments(**NIAH_DEFAULTS | shared | grid))
        niah_seconds = time.perf_counter() - start

    summary = ruler["summary"]
    print(
        f"\n## RULER, {options.model}, {options.samples} samples per cell, greedy, {options.dtype}, {device}, "
        f"haystack {summary['haystack']}\n"
    )
    print(markdown_table(ruler["scores"]))
    print(f"\n{summary['average_label']}: {summary['average']:.2f} ± {summary['average_ci95']:.2f} (95% CI)")
    print(
        f"RULER: {summary['samples']} samples in {ruler_seconds:.0f} s "
        f"(data generation, loading and decoding, batch {options.batch_size}); "
        f"skipped: {summary['skipped_tasks'] or 'none'}"
    )
    if niah is not None:
        print(f"\n## NIAH heatmap (depth × length), {options.niah_samples} samples per cell\n")
        print(markdown_table(niah["scores"]))
        print(
            f"\nNIAH: {niah['summary']['samples']} samples in {niah_seconds:.0f} s; heatmap {niah['summary']['heatmap']}"
        )


if __name__ == "__main__":
    main()
