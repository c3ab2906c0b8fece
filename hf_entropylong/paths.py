"""Folders that ship inside the package: the recipes and the lm-eval task files.

`hf-entropylong recipes-path` and `hf-entropylong eval tasks-path` print them for other tools' options:

    accelerate launch --config_file "$(hf-entropylong recipes-path)/accelerate_configs/fsdp2.yaml" ...
    lm_eval --include_path "$(hf-entropylong eval tasks-path)" --tasks entropylong_ruler_synthetic ...

A recipe path given as `recipes/...` that does not exist from the current directory is read from the installed
folder (`installed_recipe`; the CLI applies it to `--config`), so `hf-entropylong build --config
recipes/build/demo.yaml` and `hf-entropylong train sft --config recipes/tiny/sft.yaml` (whose data file and chat
template are `recipes/tiny/...` too) work from any directory; a checkout's own `recipes/` is used when it is there.
"""

from __future__ import annotations

import argparse
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
RECIPES_DIR = PACKAGE_DIR / "recipes"
TASKS_DIR = PACKAGE_DIR / "eval" / "lm_eval_tasks"
PREFIX = "recipes/"


def installed_recipe(value: str | None) -> str | None:
    """`value`, or the installed recipe file it names when it is a missing `recipes/...` path."""
    if value and value.startswith(PREFIX) and not Path(value).exists():
        installed = RECIPES_DIR / value[len(PREFIX) :]
        if installed.exists():
            return str(installed)
    return value


def _print_folder(folder: Path, prog: str, description: str, argv: list[str] | None) -> None:
    argparse.ArgumentParser(prog=prog, description=description).parse_args(argv)
    print(folder)


def recipes_path(argv: list[str] | None = None) -> None:
    """Print the absolute path of the installed `recipes/` folder; takes no arguments."""
    _print_folder(RECIPES_DIR, "hf-entropylong recipes-path", "Print the installed recipes folder.", argv)


def tasks_path(argv: list[str] | None = None) -> None:
    """Print the absolute path of the installed lm-eval task folder, for `lm_eval --include_path`."""
    _print_folder(
        TASKS_DIR, "hf-entropylong eval tasks-path", "Print the installed lm-eval task folder.", argv
    )
