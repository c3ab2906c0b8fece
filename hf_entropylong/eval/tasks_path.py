"""`hf-entropylong eval tasks-path`: print the installed lm-eval task folder, for `lm_eval --include_path`.

The folder ships inside the package, so this works from any directory once `hf_entropylong` is installed:

    lm_eval --include_path "$(hf-entropylong eval tasks-path)" --tasks entropylong_ruler_synthetic ...
"""

from __future__ import annotations

import argparse

from .task_files import TASKS_DIR


def main(argv: list[str] | None = None) -> None:
    """Print the absolute path of `lm_eval_tasks/`; takes no arguments."""
    argparse.ArgumentParser(
        prog="hf-entropylong eval tasks-path", description=__doc__.splitlines()[0]
    ).parse_args(argv)
    print(TASKS_DIR.resolve())


if __name__ == "__main__":
    from hf_entropylong import cli

    cli.run(main)
