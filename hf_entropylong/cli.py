"""The `hf-entropylong` command: one sub-command per entry point, each a module with `main(argv)`.

hf-entropylong build --config recipes/build/demo.yaml
hf-entropylong train {cpt,sft} --config recipes/tiny/cpt.yaml
hf-entropylong eval {ruler,niah,longbench-v2} --model PATH_OR_ID ...
"""

import importlib
import sys

COMMANDS = {
    ("build",): "hf_entropylong.build",
    ("train", "cpt"): "hf_entropylong.train.cpt",
    ("train", "sft"): "hf_entropylong.train.sft",
    ("eval", "ruler"): "hf_entropylong.eval.ruler",
    ("eval", "niah"): "hf_entropylong.eval.niah",
    ("eval", "longbench-v2"): "hf_entropylong.eval.longbench_v2",
}


def usage() -> str:
    lines = ["usage: hf-entropylong COMMAND [--config FILE.yaml] [--field value ...]", "", "commands:"]
    lines += [f"  {' '.join(words)}" for words in COMMANDS]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    for words, module in COMMANDS.items():
        if tuple(argv[: len(words)]) == words:
            sys.argv = [f"hf-entropylong {' '.join(words)}", *argv[len(words) :]]
            importlib.import_module(module).main(argv[len(words) :])
            return
    print(usage(), file=sys.stderr)
    raise SystemExit(0 if argv[:1] in (["-h"], ["--help"]) else 2)


if __name__ == "__main__":
    main()
