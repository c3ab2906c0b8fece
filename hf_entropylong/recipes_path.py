"""The recipes ship inside the package: `hf-entropylong recipes-path` prints their folder, and a recipe path
given as `recipes/...` that does not exist from the current directory is read from there.

So `hf-entropylong build --config recipes/build/demo.yaml` and `hf-entropylong train sft --config
recipes/tiny/sft.yaml` (whose data file and chat template are `recipes/tiny/...` too) work from any directory once
`hf_entropylong` is installed; a checkout's own `recipes/` (or any file of that name) is used when it is there.
For options read by other tools, ask for the folder:

    accelerate launch --config_file "$(hf-entropylong recipes-path)/accelerate_configs/fsdp2.yaml" ...
"""

from __future__ import annotations

import argparse
from pathlib import Path

RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
PREFIX = "recipes/"


def installed_recipe(value: str | None) -> str | None:
    """`value`, or the installed recipe file it names when it is a missing `recipes/...` path."""
    if value and value.startswith(PREFIX) and not Path(value).exists():
        installed = RECIPES_DIR / value[len(PREFIX) :]
        if installed.exists():
            return str(installed)
    return value


def with_installed_config(argv: list[str]) -> list[str]:
    """`argv` with the value of `--config` resolved by `installed_recipe`."""
    argv = list(argv)
    if "--config" in argv[:-1]:
        index = argv.index("--config") + 1
        argv[index] = installed_recipe(argv[index])
    return argv


def main(argv: list[str] | None = None) -> None:
    """Print the absolute path of the installed `recipes/` folder; takes no arguments."""
    argparse.ArgumentParser(
        prog="hf-entropylong recipes-path", description=__doc__.splitlines()[0]
    ).parse_args(argv)
    print(RECIPES_DIR)


if __name__ == "__main__":
    from hf_entropylong import cli

    cli.run(main)
