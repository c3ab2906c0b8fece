"""`hf-entropylong eval tasks-path`: print the installed lm-eval task folder, for `lm_eval --include_path`.

The folder ships inside the package, so this works from any directory once `hf_entropylong` is installed:

    lm_eval --include_path "$(hf-entropylong eval tasks-path)" --tasks entropylong_ruler_synthetic ...
"""

from __future__ import annotations

from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent / "lm_eval_tasks"


def main(argv: list[str] | None = None) -> None:
    """Print the absolute path of `lm_eval_tasks/`; takes no arguments."""
    if argv:
        raise ValueError(f"eval tasks-path takes no arguments, got {' '.join(argv)}.")
    print(TASKS_DIR)


if __name__ == "__main__":
    from hf_entropylong import cli

    cli.run(main)
