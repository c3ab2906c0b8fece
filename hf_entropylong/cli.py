"""The `hf-entropylong` command: one sub-command per entry point, each a module with `main(argv)`.

hf-entropylong build --config recipes/build/demo.yaml
hf-entropylong report outputs/demo [OUTPUT_DIR ...]   # a static HTML page of builds, side by side
hf-entropylong train {cpt,sft} --config recipes/tiny/cpt.yaml
hf-entropylong eval {ruler,niah,longbench-v2} --model PATH_OR_ID ...
hf-entropylong eval attention MODEL [MODEL ...]   # attention from question to answer, by length and depth
hf-entropylong eval short --model PATH_OR_ID --base_model BASE   # the six short-text tasks, side by side
hf-entropylong eval tasks-path          # the installed lm-eval task folder
hf-entropylong recipes-path             # the installed recipes (`--config recipes/...` finds them from anywhere)
hf-entropylong export outputs/demo OUT --format mds   # MDS shards for the authors' ProLong-derived trainer
hf-entropylong import SRC OUT [--tokenizer NAME] [--max_seq_length N]   # MDS / tokenized / text data, as a build
hf-entropylong retokenize outputs/demo OUT --tokenizer NAME --max_seq_length N   # another tokenizer, re-packed
hf-entropylong --version

`python -m hf_entropylong COMMAND ...` is the same command, for launchers that start modules:
`accelerate launch -m hf_entropylong build ...`, `torchrun ... -m hf_entropylong build ...`.

Errors a user can fix (a bad config or value, a missing source, model or file, a folder in the way) end the
command with one line on stderr that names the problem, and exit code 2; `--debug` (or
`HF_ENTROPYLONG_DEBUG=1`) shows the traceback instead. Modules run on their own (`python -m
hf_entropylong.train.cpt`) get the same through `run`, which also reads a `--config recipes/...` that is not in
the current directory from the installed recipes (`paths.installed_recipe`).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable

from ._version import __version__
from .paths import installed_recipe

COMMANDS = {  # words -> "module:function", the function taking the remaining argv
    ("build",): "hf_entropylong.builder.executors:main",
    ("report",): "hf_entropylong.report:main",
    ("train", "cpt"): "hf_entropylong.train.cpt:main",
    ("train", "sft"): "hf_entropylong.train.sft:main",
    ("eval", "ruler"): "hf_entropylong.eval.ruler:main",
    ("eval", "niah"): "hf_entropylong.eval.niah:main",
    ("eval", "longbench-v2"): "hf_entropylong.eval.longbench_v2:main",
    ("eval", "attention"): "hf_entropylong.eval.attention:main",
    ("eval", "short"): "hf_entropylong.eval.short_text:main",
    ("eval", "tasks-path"): "hf_entropylong.paths:tasks_path",
    ("recipes-path",): "hf_entropylong.paths:recipes_path",
    ("export",): "hf_entropylong.interop.mds:main",
    ("import",): "hf_entropylong.interop.importer:main",
    ("retokenize",): "hf_entropylong.interop.retokenize:main",
}
# What a user can fix: bad values and configs (ValueError, YAML errors), missing files, models, sources and
# packages (OSError, ImportError), a batch too large for the device (MemoryError). Anything else is a bug and
# keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, ImportError, MemoryError)
# Modules that commands import lazily, and the extra of setup.cfg that installs each.
EXTRAS = {
    "lm_eval": "eval",
    "wonderwords": "eval",
    "deepspeed": "gpu",
    "liger_kernel": "gpu",
    "faiss": "cpu",
    "datatrove": "scale",
    "ray": "scale",
}


def usage() -> str:
    lines = [
        "usage: hf-entropylong COMMAND [--config FILE.yaml] [--field value ...] [--debug] | --version",
        "",
        "commands:",
    ]
    lines += [f"  {' '.join(words)}" for words in COMMANDS]
    return "\n".join(lines)


def run(main: Callable[[list[str]], object], argv: list[str] | None = None, prog: str | None = None) -> None:
    """Call `main(argv)`, turning a user error into one line on stderr and exit code 2 (see the docstring)."""
    import yaml

    argv = with_installed_config(list(sys.argv[1:] if argv is None else argv))
    debug = "--debug" in argv or os.environ.get("HF_ENTROPYLONG_DEBUG", "0") not in ("", "0")
    argv = [arg for arg in argv if arg != "--debug"]
    spec = getattr(
        sys.modules["__main__"], "__spec__", None
    )  # `python -m hf_entropylong.train.cpt` names its module
    prog = prog or (f"python -m {spec.name}" if spec else os.path.basename(sys.argv[0]))
    try:
        main(argv)
    except (*USER_ERRORS, yaml.YAMLError) as error:
        if debug:
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        if isinstance(error, ModuleNotFoundError) and error.name in EXTRAS:
            message = f"{error.name} is not installed: pip install 'hf_entropylong[{EXTRAS[error.name]}]'"
        print(f"{prog}: error: {message} (--debug shows the traceback)", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{prog}: interrupted; the same command resumes from the work already cached.", file=sys.stderr)
        raise SystemExit(130) from None


def with_installed_config(argv: list[str]) -> list[str]:
    """`argv` with the value of `--config` resolved by `paths.installed_recipe`."""
    argv = list(argv)
    if "--config" in argv[:-1]:
        index = argv.index("--config") + 1
        argv[index] = installed_recipe(argv[index])
    return argv


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--version"]:
        print(f"hf-entropylong {__version__}")
        return
    for words, target in COMMANDS.items():
        if tuple(argv[: len(words)]) == words:
            prog = f"hf-entropylong {' '.join(words)}"
            sys.argv = [prog, *argv[len(words) :]]
            module, function = target.split(":")
            run(getattr(importlib.import_module(module), function), argv[len(words) :], prog)
            return
    print(usage(), file=sys.stderr)
    raise SystemExit(0 if argv[:1] in (["-h"], ["--help"]) else 2)


if __name__ == "__main__":
    main()
