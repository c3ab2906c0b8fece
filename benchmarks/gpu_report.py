"""Tables of `make gpu-check`'s records (one JSON object per section, `gpu_check.jsonl`), importable without torch.

`summary_table` is the one-line-per-section table the command prints at its end (and on SIGTERM); `markdown` the
tables of every measurement, for BENCHMARKS.md (`write_benchmarks` replaces the text between its gpu-check
markers). `throughput_table` is also `train_throughput.py`'s.
"""

from __future__ import annotations

import re
from pathlib import Path

MARKERS = ("<!-- gpu-check:start -->", "<!-- gpu-check:end -->")


def throughput_table(rows: list[dict]) -> str:
    """The markdown table of `train_throughput.throughput` rows."""
    lines = ["| model | tokens | units | attention | step | tokens/s | step s | peak GiB | TFLOP/s | MFU |",
             "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        if "error" in r:
            lines.append(
                f"| {r['model']} | {r['length']:,} | | {r['attention']} | {r['step']} | {r['error']} | | | | |"
            )
        else:
            mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "—"
            lines.append(
                f"| {r['model']} | {r['length']:,} | {r['units']} | {r['attention']} | {r['step']} | "
                f"{r['tokens_per_s']:,} | {r['step_s']} | {r['peak_mem_gib']} | {r['tflops']} | {mfu} |"
            )
    return "\n".join(lines)


def headline(record: dict) -> str:
    """The section's main figures in a few words."""
    result, name = record.get("result") or {}, record["section"]
    if "error" in record:
        return record["error"][:100]
    if name == "test_gpu":
        return result.get("summary", "")
    if name == "kernels":
        return ", ".join(f"{r['kernel']} {r['tflops']} TFLOP/s" for r in result.get("rows", []))
    if name.startswith("cpt_"):
        row = result.get("row", {})
        if "error" in row:
            return row["error"]
        mfu = f", MFU {row['mfu']:.1%}" if row.get("mfu") is not None else ""
        peak = f", {row['peak_mem_gib']} GiB" if row.get("peak_mem_gib") is not None else ""
        return f"{row.get('tokens_per_s', 0):,} tok/s{mfu}{peak}"
    if name == "sequence_parallel":
        shown = [
            f"{r['attention']}: grads vs plain {r['grads_vs_plain']:.1e}" for r in result.get("rows", [])
        ]
        return "; ".join(shown + [f"{a} refused" for a in result.get("refused", {})])
    if name == "builder_lm":
        return (
            f"entropy {result.get('entropy_tokens_per_s', 0):,.0f} tok/s, "
            f"verification {result.get('verify_tokens_per_s', 0):,.0f} tok/s"
        )
    if name == "faiss_index":
        if result.get("skipped"):
            return result["skipped"]
        return next(
            (line["what"] for line in reversed(result.get("lines", [])) if "recall" in line["what"]), ""
        )
    return ""


def summary_table(records: list[dict]) -> str:
    """One line per section: status, seconds, main figures, the checks outside their bounds."""
    lines = ["| section | status | s | figures | checks outside their bounds |", "|---|---|---|---|---|"]
    for record in records:
        failed = [
            f"{c['what']} = {c['value']:.2g} ({c['bound']})" if isinstance(c["value"], float) else c["what"]
            for c in (record.get("result") or {}).get("checks", [])
            if not c["ok"]
        ]
        figures = headline(record).replace("|", "/")
        lines.append(
            f"| {record['section']} | {record['status']} | {record.get('seconds', 0):.0f} | {figures} | "
            + "; ".join(failed).replace("|", "/")
            + " |"
        )
    return "\n".join(lines)


def kernels_table(result: dict) -> str:
    lines = [
        "| kernel | step | ms | TFLOP/s | ‖out − fp32 per-unit sdpa‖/‖ref‖ | ‖Δ q/k/v grads‖/‖ref‖, worst |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        grads = f"{r['grads_vs_fp32']:.1e}" if "grads_vs_fp32" in r else ""
        lines.append(
            f"| {r['kernel']} | {r['step']} | {r['ms']} | {r['tflops']} | {r['vs_fp32_per_unit_sdpa']:.1e} | {grads} |"
        )
    return f"One packed row of {result['tokens']:,} tokens, {result['units']} units:\n\n" + "\n".join(lines)


def sequence_parallel_table(result: dict) -> str:
    lines = [
        "| core attention | tokens | units | loss | Ulysses vs plain: loss, grads | plain vs sdpa: loss, grads | "
        "step s plain / Ulysses |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['attention']} | {r['tokens']:,} | {r['units']} | {r['loss']:.4f} | {r['loss_vs_plain']:.1e}, "
            f"{r['grads_vs_plain']:.1e} | {r['loss_vs_sdpa']:.1e}, {r['grads_vs_sdpa']:.1e} | "
            f"{r['step_s_plain']} / {r['step_s_ulysses']} |"
        )
    refused = [f"{name} refused: {why}" for name, why in result.get("refused", {}).items()]
    return "\n".join(lines + ([""] + refused if refused else []))


def builder_table(result: dict) -> str:
    lines = [
        "| stage | method | tokens/s | s | peak MiB above the model | entropies vs naive |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"| {r['stage']} | {r['method']} | {r['error']} | | | |")
            continue
        difference = result["vs_naive"].get(r["method"])
        lines.append(
            f"| {r['stage']} | {r['method']} | {r['tokens_per_s']:,.0f} | {r['seconds']:.2f} | {r['peak_mib']:,.0f} "
            f"| {'' if difference is None else f'{difference:.1e}'} |"
        )
    return "\n".join(lines)


def markdown(records: list[dict]) -> str:
    """The summary and every section's table, for BENCHMARKS.md."""
    environment = next((r for r in records if r["section"] == "environment"), {})
    by_name = {r["section"]: r for r in records if r.get("result") and r["status"] != "error"}
    packages = " · ".join(f"{n} {v or 'not installed'}" for n, v in environment.get("packages", {}).items())
    parts = [
        f"`make gpu-check` on {environment.get('device', '?')} · Python {environment.get('python')} · {packages}"
    ]
    parts.append(summary_table([r for r in records if r["section"] != "environment"]))
    tables = {
        "kernels": kernels_table,
        "sequence_parallel": sequence_parallel_table,
        "builder_lm": builder_table,
    }
    for name, table in tables.items():
        if name in by_name:
            parts.append(f"{name}:\n\n{table(by_name[name]['result'])}")
    rows = [r["result"]["row"] for n, r in by_name.items() if n.startswith("cpt_")]
    if rows:
        parts.append(throughput_table(rows))
    return "\n\n".join(parts)


def write_benchmarks(path: Path, table: str) -> None:
    """Replace the text between the gpu-check markers of `path` (appended at the end when absent)."""
    text = path.read_text()
    section = f"{MARKERS[0]}\n{table}\n{MARKERS[1]}"
    pattern = re.compile(re.escape(MARKERS[0]) + ".*?" + re.escape(MARKERS[1]), re.DOTALL)
    path.write_text(
        pattern.sub(lambda _: section, text) if pattern.search(text) else f"{text.rstrip()}\n\n{section}\n"
    )
