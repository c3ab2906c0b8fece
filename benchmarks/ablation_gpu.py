"""The paper's comparison end to end on one GPU: each recipe's data, the same training on each, RULER on each.

`make ablation-gpu` (or `python benchmarks/ablation_gpu.py`), in three steps:

1. Data: every method (`--methods`) built from the embedded inputs (`recipes/build/demo.yaml`: SmolLM2-135M,
   all-MiniLM-L6-v2, the 10,033 Wikipedia summaries; `--num_roots` roots, rows of `--max_seq_length` = 8,192
   tokens), all sharing one cache (one index, one entropy stage for entropylong and noverify).
2. Training: the embedded SmolLM2-135M continued-pretrained on each build with the same seed, schedule and number
   of tokens: `--steps` optimizer steps of one row each (`--steps` × 8,192 tokens; a build with fewer rows is
   read again, epoch after epoch, so that every method trains on the same number of tokens). RoPE base and
   window are raised for every model alike (`--rope_theta`, `--window`) so that RULER can run at 16K.
3. RULER (`hf-entropylong eval ruler`) on each trained model at `--lengths` (8K and 16K), `--samples` per cell,
   with 95% confidence intervals; the 11 synthetic tasks on the embedded haystack unless `--haystack` and the QA
   files are given, so the average is labelled by what it covers (never "RULER average" offline).

Writes `<output_dir>/ablation.md` (one table: a row per method with its rows, training tokens, RULER per length
± CI and the average) and `ablation.json`. The default budget is sized to fit 10 minutes on one H100 (400 roots;
150 steps × 8,192 = 1.2M tokens per method, 6.1M in all; 50 samples per cell): not measured yet, no GPU has run
it. `--dry_run` shrinks everything to a CPU smoke run of seconds (a 2-layer model from SmolLM2's config, 256-token
rows, 2 steps, one task at 512 tokens): `tests/test_ablation_gpu.py` runs it.

    python benchmarks/ablation_gpu.py --output_dir outputs/ablation-gpu
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hf_entropylong.builder import build, demo_config
from hf_entropylong.builder.runner import NothingToPackError
from hf_entropylong.eval.ruler import RulerArguments, evaluate
from hf_entropylong.eval.ruler_constants import TASK_NAMES
from hf_entropylong.methods import METHODS
from hf_entropylong.publish.counts import method_label
from hf_entropylong.train import cpt

SYNTHETIC_TASKS = [task for task in TASK_NAMES if not task.startswith("qa")]
TINY_MODEL = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2}  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", default="outputs/ablation-gpu")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--roots", default=None, help="Roots and corpus (default: the embedded summaries).")
    parser.add_argument("--num_roots", type=int, default=400)
    parser.add_argument("--max_seq_length", type=int, default=8192)
    parser.add_argument("--steps", type=int, default=150, help="Rows trained on per method (one per step).")
    parser.add_argument("--learning_rate", type=float, default=2e-5)
    parser.add_argument("--rope_theta", type=float, default=1e6)
    parser.add_argument("--window", type=int, default=16384)
    parser.add_argument("--lengths", type=int, nargs="+", default=[8192, 16384])
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--tasks", nargs="+", default=SYNTHETIC_TASKS)
    parser.add_argument("--haystack", default=None)
    parser.add_argument("--squad_file", default=None)
    parser.add_argument("--hotpotqa_file", default=None)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--dry_run", action="store_true", help="A CPU smoke run of seconds.")
    args = parser.parse_args(argv)
    if args.dry_run:
        args.num_roots, args.max_seq_length, args.steps, args.window = min(args.num_roots, 8), 256, 2, 1024
        args.lengths, args.samples, args.tasks = [512], 1, ["niah_single_1"]
    return args


def build_data(method: str, args: argparse.Namespace, output: Path):
    """The method's dataset in `output/data-<method>` (the shared cache in `output/cache`)."""
    sources = {"roots": args.roots, "corpus": [args.roots]} if args.roots else {}
    small = {"meta_chunk_chars": 120, "meta_chunk_sentences": True, "quest_max_keyword_share": 0.5}
    config = demo_config(
        method=method,
        num_roots=args.num_roots,
        max_seq_length=args.max_seq_length,
        min_row_fill=0.0,
        seed=args.seed,
        output_dir=str(output / f"data-{method}"),
        cache_dir=str(output / "cache"),
        overwrite_output_dir=True,
        **sources,
        **(small if args.dry_run else {}),
    )
    return config, build(config)


def train(method: str, args: argparse.Namespace, output: Path) -> Path:
    """SmolLM2-135M (in a dry run: a 2-layer model from its config) trained `--steps` rows of the build."""
    model_dir = output / f"model-{method}"
    overrides = {"rope_theta": args.rope_theta, "max_position_embeddings": args.window}
    argv = [
        "--model_name_or_path", "embedded:SmolLM2-135M-Instruct", "--dataset_name", str(output / f"data-{method}"),
        "--output_dir", str(model_dir), "--max_steps", str(args.steps),
        "--per_device_train_batch_size", "1", "--learning_rate", str(args.learning_rate),
        "--lr_scheduler_type", "cosine", "--warmup_steps", str(max(1, args.steps // 10)), "--seed", str(args.seed),
        "--logging_steps", "10", "--save_strategy", "no", "--report_to", "none",
        "--config_overrides", json.dumps(overrides | (TINY_MODEL if args.dry_run else {})),
    ]  # fmt: skip
    argv += (
        ["--init_from_config", "true", "--use_cpu", "true", "--dtype", "float32"]
        if args.dry_run
        else ["--bf16", "true", "--dtype", "bfloat16", "--activation_checkpointing", "true"]
    )
    cpt.main(argv)
    return model_dir


def evaluate_model(model_dir: Path, args: argparse.Namespace) -> dict:
    optional = {
        key: getattr(args, key) for key in ("haystack", "squad_file", "hotpotqa_file") if getattr(args, key)
    }
    return evaluate(
        RulerArguments(
            model=str(model_dir), lengths=args.lengths, samples=args.samples, tasks=args.tasks, seed=args.seed,
            output_dir=str(model_dir / "ruler"), dtype="float32" if args.dry_run else "bfloat16",
            max_gen_toks=4 if args.dry_run else None, **optional,
        )
    )  # fmt: skip


def table(rows: list[dict], lengths: list[int]) -> str:
    """One row per method: its data, its training tokens, RULER per length ± CI and the labelled average."""
    names = [f"{n // 1024}K" if n % 1024 == 0 else str(n) for n in lengths]
    lines = [
        "| method (shown as) | rows built | training tokens | " + " | ".join(f"RULER {n}" for n in names) + " | average |",
        "|---|---|---|" + "---|" * (len(lengths) + 1),
    ]  # fmt: skip
    for row in rows:
        cells = [f"{row['per_length'][str(n)]:.2f}" if row["rows"] else "–" for n in lengths]
        average = f"{row['average']:.2f} ± {row['average_ci95']:.2f}" if row["rows"] else "no row built"
        lines.append(
            f"| {row['method']} ({row['label']}) | {row['rows']} | {row['tokens']:,} | " + " | ".join(cells)
            + f" | {average} |"
        )  # fmt: skip
    label = next((row["average_label"] for row in rows if row["rows"]), "")
    return "\n".join(lines) + f"\n\nAverage: {label} (95% CI)."


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    rows = []
    for method in args.methods:
        try:
            config, counts = build_data(method, args, output)
        except NothingToPackError as error:  # no row to train on: said in the table, the others go on
            print(f"{method}: {error}")
            rows.append({"method": method, "label": method, "rows": 0, "tokens": 0})
            continue
        model_dir = train(method, args, output)
        summary = evaluate_model(model_dir, args)["summary"]
        rows.append(
            {
                "method": method,
                "label": method_label(method, vars(config)),
                "rows": counts.sequences,
                "tokens": args.steps * args.max_seq_length,
                "per_length": summary["per_length"],
                "average": summary["average"],
                "average_ci95": summary["average_ci95"],
                "average_label": summary["average_label"],
            }
        )
    markdown = table(rows, args.lengths)
    (output / "ablation.md").write_text(markdown + "\n", encoding="utf-8")
    (output / "ablation.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    print(f"\n{markdown}\n\n{len(rows)} methods; table in {output / 'ablation.md'}")
    return rows


if __name__ == "__main__":
    main()
