"""`hf-entropylong eval niah`: the needle-in-a-haystack heatmap (needle depth × context length).

    hf-entropylong eval niah --model PATH_OR_ID --lengths 2048 4096 8192 --depths 0 25 50 75 100 --samples 5

Every cell is RULER's single-needle essay task (niah_single_2: a word key and a 7-digit value hidden in
the Wikipedia haystack) with the needle inserted at a fixed depth — the share of the haystack's sentences
before it, in percent — instead of a random one. Each cell is scored with RULER's `all` match over its
samples, × 100. Output: `niah_heatmap.png` (rows = depth, top = 0%, columns = length, red → green like the
usual pressure-test plots), `results.json` (task `depth_<d>` per length, `summary.average`),
`results.md` and `predictions.jsonl`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..models import EMBEDDED_CORPUS, EMBEDDED_LM
from .runner import check_lengths, load_lm, model_window, run_tasks
from .scoring import markdown_table, summarize, table_scores, write_results


@dataclass
class NiahArguments:
    """Options of `hf-entropylong eval niah` (YAML via --config; flags override)."""

    model: str = field(default=EMBEDDED_LM, metadata={"help": "Hub id, local path or embedded name."})
    lengths: list[int] = field(default_factory=lambda: [1024, 2048, 4096, 8192], metadata={"help": "Context lengths."})
    depths: list[int] = field(
        default_factory=lambda: [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100], metadata={"help": "Needle depths (%)."}
    )
    samples: int = field(default=5, metadata={"help": "Samples per cell."})
    seed: int = 42
    corpus: str = field(default=EMBEDDED_CORPUS, metadata={"help": "Haystack: JSON-lines with 'text'."})
    chat_template: bool = False
    dtype: str = "bfloat16"
    batch_size: int = 1
    attn_implementation: str | None = None
    model_max_length: int | None = None
    max_gen_toks: int | None = field(default=None, metadata={"help": "Generated tokens (default RULER's 128)."})
    output_dir: str = "outputs/eval/niah"


def plot_heatmap(cells: list[dict], path: str | Path, title: str) -> Path:
    """Draw {depth, length, score} cells as a depth × length heatmap PNG (scores 0-100)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import LinearSegmentedColormap

    depths = sorted({cell["depth"] for cell in cells})
    lengths = sorted({cell["length"] for cell in cells})
    grid = np.full((len(depths), len(lengths)), np.nan)
    for cell in cells:
        grid[depths.index(cell["depth"]), lengths.index(cell["length"])] = cell["score"]
    colors = LinearSegmentedColormap.from_list("niah", ["#F0496E", "#EBB839", "#0CD79F"])
    figure, axes = plt.subplots(figsize=(max(6.0, 2.5 + 0.9 * len(lengths)), max(3.0, 1.2 + 0.4 * len(depths))))
    image = axes.imshow(grid, cmap=colors, vmin=0, vmax=100, aspect="auto")
    axes.set_xticks(range(len(lengths)), [f"{length // 1024}K" if length % 1024 == 0 else str(length) for length in lengths])
    axes.set_yticks(range(len(depths)), [f"{depth}%" for depth in depths])
    for i in range(len(depths)):
        for j in range(len(lengths)):
            if not np.isnan(grid[i, j]):
                axes.text(j, i, f"{grid[i, j]:.0f}", ha="center", va="center", fontsize=8)
    axes.set_xlabel("Context length (tokens)")
    axes.set_ylabel("Needle depth")
    axes.set_title(title, fontsize=10)
    figure.colorbar(image, ax=axes, label="Score")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def evaluate(args: NiahArguments) -> dict:
    """Run the grid described by `args`, write the heatmap and results; returns scores and summary."""
    if any(not 0 <= depth <= 100 for depth in args.depths) or not args.depths:
        raise ValueError(f"Depths are percentages in [0, 100], got {args.depths}.")
    window = args.model_max_length or model_window(args.model)
    check_lengths(args.lengths, args.model, window)
    metadata = {
        "tokenizer": args.model,
        "max_seq_lengths": list(args.lengths),
        "depths": list(args.depths),
        "num_samples": args.samples,
        "seed": args.seed,
        "corpus": args.corpus,
        "chat_template": args.chat_template,
    }
    start = time.perf_counter()
    lm, _ = load_lm(args.model, args.dtype, args.batch_size, window, args.attn_implementation)
    gen_kwargs = None if args.max_gen_toks is None else {"max_gen_toks": args.max_gen_toks}
    rows = run_tasks(lm, ["entropylong_niah"], metadata, args.output_dir, gen_kwargs)
    for row in rows:
        row["task"] = f"depth_{row['depth']}"
    scores = sorted(table_scores(rows), key=lambda s: (int(s["task"].split("_")[1]), s["length"]))
    cells = [{"depth": int(s["task"].split("_")[1]), "length": s["length"], "score": s["score"]} for s in scores]
    png = plot_heatmap(cells, Path(args.output_dir) / "niah_heatmap.png", f"Needle in a haystack: {args.model}")
    summary = summarize(scores) | {
        "samples": len(rows),
        "heatmap": str(png),
        "seconds": round(time.perf_counter() - start, 1),
    }
    table = markdown_table(scores)
    write_results(
        args.output_dir, model=args.model, benchmark="niah", config=asdict(args) | {"window": window},
        scores=scores, summary=summary, markdown=table, predictions=rows,
    )
    print(table)
    print(f"\n{len(rows)} samples over {len(args.depths)} depths × {len(args.lengths)} lengths; "
          f"average {summary['average']:.2f}. Heatmap: {png}")
    return {"scores": scores, "summary": summary}


def main(argv: list[str] | None = None) -> dict:
    from trl import TrlParser

    (args,) = TrlParser((NiahArguments,)).parse_args_and_config(args=argv)
    return evaluate(args)


if __name__ == "__main__":
    main()
