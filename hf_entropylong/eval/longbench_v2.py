"""`hf-entropylong eval longbench-v2`: LongBench-v2 with its official protocol, from a local data file.

    hf-entropylong eval longbench-v2 --model PATH_OR_ID --data LongBench-v2/data.json

lm-eval's `longbench2` scores by log-likelihood with left truncation, which is not comparable with the
leaderboard; this module follows the authors' `pred.py` instead:

1. Prompt: the 0-shot template ("Please read the following text and answer the question below. <text>
   … </text> What is the correct answer to this question: … Choices: (A) … (D) … Format your response as
   follows: "The correct answer is (insert answer here)"."), sent as one user turn through the model's chat
   template by lm-eval's `HFLM.apply_chat_template` (`--chat_template false` for base models).
2. Middle truncation: when the prompt is longer than the budget (default 120,000 tokens, as the
   authors use for 128K models, lowered to fit the model's window with the generation budget and the
   chat template), keep its first and last budget/2 tokens and decode them back to text.
3. Generation: up to 128 new tokens, greedy (the authors sample at temperature 0.1; greedy keeps runs
   reproducible). All questions go to lm-eval's `HFLM.generate_until` as one list of requests, which it
   sorts by length and decodes `--batch_size` at a time, left-padded.
4. Answer extraction: drop `*`, then the letter of "The correct answer is (X)", else of "The correct
   answer is X"; anything else counts as wrong.
5. Accuracy (%) Overall, Easy / Hard (`difficulty`) and Short / Medium / Long (`length`).

The data file is the dataset's `data.json` (a JSON list) or JSON lines, with `_id`, `difficulty`,
`length`, `question`, `choice_A`…`choice_D`, `answer` and `context` in every row.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..models import context_window
from .ruler_tasks import count_tokens
from .runner import EvalModelArguments, load_lm
from .scoring import write_results

TEMPLATE = (
    "Please read the following text and answer the question below.\n\n<text>\n$DOC$\n</text>\n\n"
    "What is the correct answer to this question: $Q$\nChoices:\n(A) $C_A$\n(B) $C_B$\n(C) $C_C$\n(D) $C_D$\n\n"
    'Format your response as follows: "The correct answer is (insert answer here)".'
)
REQUIRED = (
    "_id",
    "difficulty",
    "length",
    "question",
    "choice_A",
    "choice_B",
    "choice_C",
    "choice_D",
    "answer",
    "context",
)
DIFFICULTIES = ("easy", "hard")
LENGTHS = ("short", "medium", "long")
_ANSWER = (re.compile(r"The correct answer is \(([A-D])\)"), re.compile(r"The correct answer is ([A-D])"))


@dataclass
class LongBenchV2Arguments(EvalModelArguments):
    """Options of `hf-entropylong eval longbench-v2` (YAML via --config; flags override)."""

    data: str = field(default="", metadata={"help": "Local LongBench-v2 data.json (JSON list) or .jsonl."})
    max_input_tokens: int = field(
        default=120_000, metadata={"help": "Middle-truncation budget (the authors': 120000)."}
    )
    max_new_tokens: int = field(
        default=128, metadata={"help": "Generated tokens per answer (the authors': 128)."}
    )
    chat_template: bool = field(default=True, metadata={"help": "One user turn through the chat template."})
    limit: int | None = field(default=None, metadata={"help": "Evaluate only the first N questions."})
    output_dir: str = field(
        default="outputs/eval/longbench-v2", metadata={"help": "Where results are written."}
    )

    def __post_init__(self):
        self.check_positive("max_input_tokens", "max_new_tokens", "limit")


def load_data(path: str | Path) -> list[dict]:
    """Rows of a LongBench-v2 file, validated: clear errors name the file and the offending row."""
    path = Path(path)
    if not str(path) or not path.is_file():
        raise FileNotFoundError(
            f"LongBench-v2 data file {str(path)!r} not found. Download the dataset's data.json "
            "(THUDM/LongBench-v2) once and pass it with --data."
        )
    text = path.read_text(encoding="utf-8")
    try:
        rows = (
            json.loads(text)
            if text.lstrip().startswith("[")
            else [json.loads(line) for line in text.splitlines() if line.strip()]
        )
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path}: not a JSON list nor JSON lines ({error.msg}, line {error.lineno})."
        ) from error
    if not rows:
        raise ValueError(f"{path}: no questions.")
    for number, row in enumerate(rows):
        missing = [key for key in REQUIRED if not isinstance(row, dict) or key not in row]
        if missing:
            raise ValueError(f"{path}: row {number} lacks {', '.join(missing)}.")
        if row["answer"] not in ("A", "B", "C", "D"):
            raise ValueError(
                f"{path}: row {number} ({row['_id']}) has answer {row['answer']!r}, expected A-D."
            )
        if row["difficulty"] not in DIFFICULTIES or row["length"] not in LENGTHS:
            raise ValueError(
                f"{path}: row {number} ({row['_id']}) has difficulty {row['difficulty']!r} / length {row['length']!r}; "
                f"expected {DIFFICULTIES} / {LENGTHS}."
            )
    return rows


def build_prompt(row: dict) -> str:
    """The 0-shot prompt of one question (fields stripped, as the authors do)."""
    replacements = {
        "$DOC$": row["context"].strip(),
        "$Q$": row["question"].strip(),
        "$C_A$": row["choice_A"].strip(),
        "$C_B$": row["choice_B"].strip(),
        "$C_C$": row["choice_C"].strip(),
        "$C_D$": row["choice_D"].strip(),
    }
    return re.sub(r"\$(DOC|Q|C_A|C_B|C_C|C_D)\$", lambda match: replacements[match.group(0)], TEMPLATE)


def truncate_middle(prompt: str, tokenizer, budget: int) -> str:
    """`prompt` unchanged when it fits `budget` tokens, else its first and last budget/2 tokens, decoded."""
    ids = tokenizer.encode(prompt, add_special_tokens=False)
    if len(ids) <= budget:
        return prompt
    half = budget // 2
    return tokenizer.decode(ids[:half] + ids[len(ids) - (budget - half) :], skip_special_tokens=True)


def extract_answer(response: str) -> str | None:
    """The answer letter of a response ("The correct answer is (B)" → "B"), or None."""
    response = response.replace("*", "")
    for pattern in _ANSWER:
        match = pattern.search(response)
        if match:
            return match.group(1)
    return None


def breakdown(judged: list[dict]) -> list[dict]:
    """Accuracy (%) Overall, per difficulty and per length group, as {task, length: None, score, samples}."""
    groups = {"overall": judged}
    groups |= {d: [r for r in judged if r["difficulty"] == d] for d in DIFFICULTIES}
    groups |= {n: [r for r in judged if r["length"] == n] for n in LENGTHS}
    return [
        {
            "task": name,
            "length": None,
            "score": round(100 * sum(r["judge"] for r in rows) / len(rows), 2),
            "samples": len(rows),
        }
        for name, rows in groups.items()
        if rows
    ]


def evaluate(args: LongBenchV2Arguments) -> dict:
    """Run the protocol on `args.data`; writes results.json/.md and predictions.jsonl."""
    from lm_eval.api.instance import Instance

    rows = load_data(args.data)[: args.limit]
    window = context_window(args.model, args.model_max_length)
    start = time.perf_counter()
    lm, tokenizer = load_lm(args.model, args.dtype, args.batch_size, window, args.attn_implementation)

    def as_prompt(text: str) -> str:
        return lm.apply_chat_template([{"role": "user", "content": text}]) if args.chat_template else text

    budget = min(args.max_input_tokens, window - args.max_new_tokens - count_tokens(tokenizer, as_prompt("")))
    if budget <= 0:
        raise ValueError(f"The window of {args.model} ({window}) leaves no room for a prompt.")
    settings = {"until": [], "max_gen_toks": args.max_new_tokens, "do_sample": False}
    requests = [
        Instance(
            "generate_until",
            row,
            (as_prompt(truncate_middle(build_prompt(row), tokenizer, budget)), settings),
            i,
        )
        for i, row in enumerate(rows)
    ]
    judged = []
    for row, response in zip(rows, lm.generate_until(requests), strict=True):
        pred = extract_answer(response.strip())
        judged.append(
            {
                key: row[key]
                for key in ("_id", "domain", "sub_domain", "difficulty", "length", "answer")
                if key in row
            }
            | {"response": response.strip(), "pred": pred, "judge": pred == row["answer"]}
        )
    scores = breakdown(judged)
    overall = scores[0]["score"]
    summary = {
        "average": overall,
        **{s["task"]: s["score"] for s in scores},
        "questions": len(judged),
        "no_answer": sum(r["pred"] is None for r in judged),
        "input_budget": budget,
        "seconds": round(time.perf_counter() - start, 1),
    }
    header = "| " + " | ".join(s["task"].capitalize() for s in scores) + " |"
    table = "\n".join(
        [header, "|" + "---|" * len(scores), "| " + " | ".join(f"{s['score']:.1f}" for s in scores) + " |"]
    )
    result = {"scores": scores, "summary": summary}
    write_results(args, "longbench-v2", window, result, markdown=table, predictions=judged)
    print(table)
    print(
        f"\n{len(judged)} questions, {summary['no_answer']} without a parsable answer; overall {overall:.1f}%."
    )
    return result


def main(argv: list[str] | None = None) -> dict:
    from trl import TrlParser

    (args,) = TrlParser((LongBenchV2Arguments,)).parse_args_and_config(args=argv)
    return evaluate(args)


if __name__ == "__main__":
    from hf_entropylong import cli

    cli.run(main)
