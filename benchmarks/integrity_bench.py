"""What checking costs: a local model's identity from its whole weights, and a build's caches checked before reuse.

- model identity: `models.model_identity` of a local model folder (default: the embedded SmolLM2's safetensors
  copy), first with no recorded digest (every file hashed once), then with the digests recorded (what every later
  build pays).
- cache check: `files.cache_is_sound` over every cache with a checksum record in a build's `.cache/` folder, in a
  new process (nothing remembered), against the bytes read.

    python benchmarks/integrity_bench.py [--model DIR] [--cache outputs/demo/.cache]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="A local model folder (default: the embedded SmolLM2).")
    parser.add_argument("--cache", default=None, help="A build's .cache folder to check.")
    args = parser.parse_args()
    from hf_entropylong import files, models

    model = Path(args.model or models.resolve_model(models.EMBEDDED_LM))
    size = sum(p.stat().st_size for p in model.rglob("*") if p.is_file())
    rows = []
    with tempfile.TemporaryDirectory() as store:
        os.environ["HF_ENTROPYLONG_CACHE"] = store  # no digest recorded yet
        for label in ("model identity, first build (hashes every file)", "model identity, later builds"):
            clock = time.perf_counter()
            models.model_identity(str(model))
            rows.append((label, size, time.perf_counter() - clock))
    if args.cache:
        caches = [p.with_suffix("") for p in Path(args.cache).glob("*.sha256")]
        clock = time.perf_counter()
        sound = sum(files.cache_is_sound(p) for p in caches)
        seconds = time.perf_counter() - clock
        rows.append(
            (f"check {len(caches)} caches ({sound} sound)", sum(p.stat().st_size for p in caches), seconds)
        )
    print("| what | MB | seconds | MB/s |\n|---|---|---|---|")
    for label, nbytes, seconds in rows:
        print(f"| {label} | {nbytes / 1e6:,.1f} | {seconds:.3f} | {nbytes / 1e6 / seconds:,.0f} |")


if __name__ == "__main__":
    main()
