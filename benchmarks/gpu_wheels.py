"""The GPU check's packages: a manifest of exact versions, the wheels that carry them, and the check of both.

`make gpu-manifest` writes `benchmarks/gpu_manifest.txt` from this environment: every distribution the GPU check
imports (`hf-entropylong`'s requirements, DeepSpeed, pytest) and every dependency of theirs, transitively, at the
version installed here (`name==version`). Two kinds of lines are different:

- the packages the GPU image brings with its CUDA build of torch (`--from-image`: torch, triton and the large
  compiled libraries) are not carried; their line is the range every package of the manifest requires of them
  (`pyarrow>=21.0.0  # image; datasets, hf-entropylong`), so an image too old for a carried package is named;
- the CUDA-only packages (`--cuda-only liger-kernel==0.8.5`) are pinned but not installed here; the CPU dry run
  leaves them out.

`make gpu-wheels` downloads the pinned distributions as wheels for each Python version the image may have
(`.whl/gpu/py3.12`, `.whl/gpu/py3.11`; a package PyPI has as source only is built here once, pure Python);
`make gpu-check` installs the folder of the Python it runs (`--no-deps`: the manifest is the resolution), and
`gpu_check.py` calls `verify` before any work, naming every missing distribution and every version outside its
line. This module needs the standard library and `packaging` only, so it runs before anything is installed.

    python benchmarks/gpu_wheels.py manifest --out benchmarks/gpu_manifest.txt
    python benchmarks/gpu_wheels.py download --manifest benchmarks/gpu_manifest.txt --dest .whl/gpu
    python benchmarks/gpu_wheels.py verify benchmarks/gpu_manifest.txt
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

try:
    from packaging.requirements import Requirement
except ImportError:  # pip's own copy, on an interpreter without packaging
    from pip._vendor.packaging.requirements import Requirement

ROOTS = ("hf-entropylong", "deepspeed", "pytest")
# What the GPU image brings with its CUDA torch (the list of its packages: Python 3.12, torch 2.11+cu130).
FROM_IMAGE = ("torch", "triton", "numpy", "pandas", "pyarrow", "scipy", "scikit-learn", "matplotlib", "pillow",
              "fonttools", "kiwisolver", "contourpy")  # fmt: skip
CUDA_ONLY = ("liger-kernel==0.8.5",)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements_closure(roots: tuple[str, ...], from_image: set[str]) -> dict[str, dict[str, list[str]]]:
    """{distribution: {requirer: [specifiers]}} of everything `roots` need here, transitively (markers evaluated
    for this interpreter); the image's packages are leaves."""
    installed = {normalize(d.metadata["Name"]): d for d in importlib.metadata.distributions()}
    needed: dict[str, dict[str, list[str]]] = {normalize(root): {} for root in roots}
    todo = [(normalize(root), frozenset()) for root in roots]
    done: set[tuple[str, frozenset]] = set()
    while todo:
        name, extras = todo.pop()
        if (name, extras) in done or name in from_image:
            continue
        done.add((name, extras))
        if name not in installed:
            raise SystemExit(
                f"{name} is not installed here: `make setup` first (the manifest pins what is here)."
            )
        for line in installed[name].requires or []:
            requirement = Requirement(line)
            if requirement.marker and not any(
                requirement.marker.evaluate({"extra": e}) for e in {"", *extras}
            ):
                continue
            dependency = normalize(requirement.name)
            needed.setdefault(dependency, {}).setdefault(name, []).append(str(requirement.specifier))
            todo.append((dependency, frozenset(requirement.extras)))
    return needed


def write_manifest(out: Path, from_image: list[str], cuda_only: list[str]) -> None:
    image = {normalize(name) for name in from_image}
    needed = requirements_closure(ROOTS, image)
    lines = [
        "# The GPU check's packages (benchmarks/gpu_wheels.py; regenerate with `make gpu-manifest`).",
        f"# Exact versions of this environment (Python {sys.version_info[0]}.{sys.version_info[1]}); `image`: the GPU "
        "image's own, in the range the packages above require; `cuda`: CUDA-only, left out of the CPU dry run.",
    ]
    for name in sorted(needed):
        if name == normalize(ROOTS[0]):
            continue  # the checkout itself, run from PYTHONPATH
        if name in image:
            specifiers = sorted({s for specs in needed[name].values() for s in specs if s})
            merged = ",".join(dict.fromkeys(part for s in specifiers for part in s.split(",")))
            lines.append(f"{name}{merged}  # image; {', '.join(sorted(needed[name]))}")
        else:
            lines.append(f"{name}=={importlib.metadata.version(name)}")
    lines += [f"{pin}  # cuda" for pin in cuda_only]
    out.write_text("\n".join(lines) + "\n")
    print(f"{out}: {len(lines) - 2} distributions")


def read_manifest(path: Path) -> list[tuple[Requirement, set[str]]]:
    """(requirement, tags) per line; tags are the first word of the line's comment (`image`, `cuda`)."""
    entries = []
    for line in path.read_text().splitlines():
        spec, _, comment = line.partition("#")
        if spec.strip():
            entries.append((Requirement(spec.strip()), {comment.strip().split(";")[0].split(" ")[0]} - {""}))
    return entries


def verify(path: Path, cuda: bool) -> list[str]:
    """One line per distribution of the manifest that is missing here or outside its line (none: all is well)."""
    problems = []
    for requirement, tags in read_manifest(path):
        if "cuda" in tags and not cuda:
            continue
        try:
            version = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{requirement.name}: not installed (manifest: {requirement})")
            continue
        if not requirement.specifier.contains(version, prereleases=True):
            origin = "the GPU image's" if "image" in tags else "carried"
            problems.append(
                f"{requirement.name} {version} is installed, the manifest needs {requirement} ({origin})"
            )
    return problems


def download(manifest: Path, dest: Path, python_versions: list[str]) -> None:
    """Wheels of the manifest's pinned lines for each Python version, in `dest/py<version>`."""
    pins = [str(r) for r, tags in read_manifest(manifest) if "image" not in tags]
    built = dest / "built"
    for version in python_versions:
        folder = dest / f"py{version}"
        folder.mkdir(parents=True, exist_ok=True)
        tags = ["--only-binary", ":all:", "--python-version", version, "--implementation", "cp"]
        tags += [option for platform in PLATFORMS for option in ("--platform", platform)]
        for number, pin in enumerate(pins, 1):
            print(f"[{number}/{len(pins)}] Python {version}: {pin}", flush=True)
            fetch = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                *tags,
                "-d",
                str(folder),
                pin,
            ]
            if subprocess.run(fetch).returncode == 0:
                continue
            # source only on PyPI (deepspeed): build it here once, without compiled ops, as a pure-Python wheel
            build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(built), pin]
            subprocess.run(build, check=True, env={**os.environ, "DS_BUILD_OPS": "0"})
            name = normalize(Requirement(pin).name).replace("-", "_")
            for wheel in built.glob(f"{name}-*-py3-none-any.whl"):
                (folder / wheel.name).write_bytes(wheel.read_bytes())
    for folder in sorted(dest.glob("py*")):
        size = sum(f.stat().st_size for f in folder.glob("*.whl"))
        print(f"{folder}: {len(list(folder.glob('*.whl')))} wheels, {size / 2**20:.1f} MiB")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    manifest = commands.add_parser("manifest", help="write the manifest from this environment")
    manifest.add_argument("--out", type=Path, required=True)
    manifest.add_argument("--from-image", nargs="*", default=FROM_IMAGE, help="what the GPU image brings")
    manifest.add_argument("--cuda-only", nargs="*", default=CUDA_ONLY, help="CUDA-only pins (name==version)")
    fetch = commands.add_parser("download", help="download the manifest's wheels")
    fetch.add_argument("--manifest", type=Path, required=True)
    fetch.add_argument("--dest", type=Path, required=True)
    fetch.add_argument("--python-versions", nargs="+", default=["3.12", "3.11"])
    check = commands.add_parser("verify", help="name what is missing or mismatched here")
    check.add_argument("manifest", type=Path)
    check.add_argument("--cpu", action="store_true", help="leave out the CUDA-only lines")
    args = parser.parse_args(argv)
    if args.command == "manifest":
        write_manifest(args.out, args.from_image, args.cuda_only)
    elif args.command == "download":
        download(args.manifest, args.dest, args.python_versions)
    else:
        problems = verify(args.manifest, cuda=not args.cpu)
        print("\n".join(problems) or f"{args.manifest}: every distribution as pinned")
        sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
