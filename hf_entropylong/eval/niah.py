"""`hf-entropylong eval niah`: the needle-in-a-haystack heatmap (needle depth × context length).

    hf-entropylong eval niah --model PATH_OR_ID --lengths 2048 4096 8192 --depths 0 25 50 75 100 --samples 5

The `ruler` command with other defaults (same options, `ruler.RulerArguments`): `--depths` is set, so
every cell is RULER's single-needle essay task (niah_single_2: an adjective-noun key and a 7-digit value
hidden in the essay haystack, `--haystack`) with the needle inserted at a fixed depth — the share of the
haystack's sentences before it, in percent — instead of a random one. Each cell is scored with RULER's `all` match over its
samples, × 100. Output: `niah_heatmap.png` (rows = depth, top = 0%, columns = length, red → green like the
usual pressure-test plots), `results.json` (task `depth_<d>` per length, `summary.average`), `results.md`
and `predictions.jsonl`.
"""

from __future__ import annotations

from .ruler import evaluate, parse_args
from .ruler_constants import HEATMAP_DEPTHS

NIAH_DEFAULTS = {
    "lengths": [1024, 2048, 4096, 8192],
    "depths": list(HEATMAP_DEPTHS),
    "samples": 5,  # a heatmap, not a RULER score: each cell prints its 95% confidence interval
    "output_dir": "outputs/eval/niah",
}


def main(argv: list[str] | None = None) -> dict:
    return evaluate(parse_args(argv, NIAH_DEFAULTS))


if __name__ == "__main__":
    from hf_entropylong import cli

    cli.run(main)
