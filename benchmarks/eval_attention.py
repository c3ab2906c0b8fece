"""The §6.6 attention analysis of a model against a second one, with timings: BENCHMARKS.md's attention table.

    python benchmarks/eval_attention.py --lengths 512 1024 2048 4096 --depth_length 4096 --samples 3

Without `--other`, the second model is the first with its RoPE base changed (`--rope_theta`, default
10,000 instead of SmolLM2's 100,000): the same weights, written as a new folder whose config differs only
there (the weights and tokenizer files are linked, not copied). That is not a trained model; it shows the
measurement separating two models and how the RoPE base moves attention to a distant answer. Give
`--other PATH` to compare a trained checkpoint instead.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from hf_entropylong.eval.attention import AttentionArguments, evaluate
from hf_entropylong.models import EMBEDDED_LM, resolve_model


def with_rope_theta(model: str, rope_theta: float, folder: Path) -> str:
    """A folder holding `model` with `rope_theta` changed in its config; other files are linked."""
    source = Path(resolve_model(model))
    folder.mkdir(parents=True, exist_ok=True)
    for file in source.iterdir():
        target = folder / file.name
        if file.name != "config.json" and not target.exists():
            target.symlink_to(file.resolve())
    config = json.loads((source / "config.json").read_text())
    config.setdefault("rope_parameters", {"rope_type": "default"})["rope_theta"] = rope_theta
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return str(folder)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=EMBEDDED_LM)
    parser.add_argument("--other", help="The second model (default: --model with --rope_theta).")
    parser.add_argument("--rope_theta", type=float, default=10_000.0)
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    parser.add_argument("--depth_length", type=int, default=4096)
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--haystack", default=AttentionArguments.haystack)
    parser.add_argument("--output_dir", default="outputs/bench/attention")
    options = parser.parse_args()
    output = Path(options.output_dir)
    other = options.other or with_rope_theta(options.model, options.rope_theta, output / "rope-variant")
    start = time.perf_counter()
    report = evaluate(
        AttentionArguments(
            models=[options.model, other],
            lengths=options.lengths,
            depth_length=options.depth_length,
            samples=options.samples,
            haystack=options.haystack,
            output_dir=str(output),
        )
    )
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    probes = options.samples * (len(options.lengths) + len(report["config"]["depths"])) * 2
    print(f"\n{probes} probe forwards on {device} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
