"""How far the reference build's floats move across library versions and thread counts: the basis of the tolerance
in `tests/test_build.py::test_tables_equal_the_reference_build`.

That test builds the crafted corpus of `tests/builds.py` and compares the published tables with
`tests/data/small_build_reference.json`: ids, statuses, decisions and counts exactly, floats within a tolerance.
An LM's last bits change with the kernels a library version picks and with the thread count, so the tolerance is
measured here, not guessed:

    python benchmarks/float_spread.py build OUT.json [--threads N]    # this environment's tables
    python benchmarks/float_spread.py compare REF.json OTHER.json ...  # largest differences per float field

Run `build` in each environment (the locked `.venv`, `.venv-latest`) with 1 and 2 threads, then `compare` them
with the committed reference. `compare` prints, per float field, the largest absolute and relative difference, and
counts every non-float value (id, status, decision, count) that differs: any such difference is a real change.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"


def build_tables(out: Path, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    sys.path.insert(0, str(TESTS))
    from builds import DOCS, published_tables, small_config

    from hf_entropylong.builder import build

    with tempfile.TemporaryDirectory() as folder:
        docs = Path(folder) / "docs.jsonl"
        docs.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in DOCS), encoding="utf-8")
        build(small_config(docs, Path(folder) / "out"))
        out.write_text(json.dumps(published_tables(Path(folder) / "out"), indent=1) + "\n")


def differences(a, b, path: str, floats: dict, others: list) -> None:
    """Walk two tables side by side: the largest |a-b| and |a-b|/|b| per float field, and every other mismatch."""
    if isinstance(b, dict) and isinstance(a, dict):
        others.extend(f"{path}.{key} (in one only)" for key in a.keys() ^ b.keys())
        for key in a.keys() & b.keys():
            differences(a[key], b[key], f"{path}.{key}", floats, others)
    elif isinstance(b, list) and isinstance(a, list) and len(a) == len(b):
        for x, y in zip(a, b, strict=True):
            differences(x, y, path, floats, others)
    elif isinstance(b, float) and isinstance(a, float):
        if not (math.isnan(a) and math.isnan(b)):
            gap = abs(a - b)
            worst = floats[path]
            worst[0] = max(worst[0], gap)
            worst[1] = max(worst[1], gap / abs(b) if b else 0.0)
    elif a != b:
        others.append(path)


def compare(reference: Path, others: list[Path]) -> None:
    expected = json.loads(reference.read_text())
    for other in others:
        floats, mismatches = defaultdict(lambda: [0.0, 0.0]), []
        differences(json.loads(other.read_text()), expected, "", floats, mismatches)
        print(f"\n{other} against {reference}: {len(mismatches)} non-float values differ")
        for path in sorted(set(mismatches))[:10]:
            print(f"  differs: {path}")
        print(f"  {'float field':<60} {'max abs':>10} {'max rel':>10}")
        for path, (gap, rel) in sorted(floats.items(), key=lambda item: -item[1][1]):
            print(f"  {path.lstrip('.'):<60} {gap:>10.2e} {rel:>10.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build_parser = commands.add_parser("build", help="build the crafted corpus and write its tables")
    build_parser.add_argument("out", type=Path)
    build_parser.add_argument("--threads", type=int, default=2)
    compare_parser = commands.add_parser("compare", help="largest float differences against a reference")
    compare_parser.add_argument("reference", type=Path)
    compare_parser.add_argument("others", type=Path, nargs="+")
    args = parser.parse_args()
    if args.command == "build":
        build_tables(args.out, args.threads)
    else:
        compare(args.reference, args.others)


if __name__ == "__main__":
    main()
