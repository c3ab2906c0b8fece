"""The CLI as a user types it: every --help, and mistakes answered by one line and exit code 2."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from filelock import FileLock

from hf_entropylong import cli

EMBEDDED = ["--lm", "embedded:SmolLM2-135M-Instruct", "--embedder", "embedded:all-MiniLM-L6-v2"]


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "docs.jsonl").write_text(
        "".join(
            json.dumps({"id": str(i), "text": f"Document number {i} about rivers."}) + "\n" for i in range(3)
        )
    )
    (tmp_path / "empty.jsonl").write_text("\n")
    (tmp_path / "twice.jsonl").write_text('{"id": "a", "text": "One."}\n{"id": "a", "text": "Two."}\n')
    (tmp_path / "bad_key.yaml").write_text(yaml.safe_dump({"alpha": 2.0, "no_such_setting": 1}))
    (tmp_path / "broken.yaml").write_text("alpha: [2.0\n")
    return tmp_path


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    "command", [[], *(list(words) for words in cli.COMMANDS)], ids=lambda words: " ".join(words) or "top"
)
def test_every_help_works(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*command, "--help"])
    assert exit_info.value.code == 0
    captured = capsys.readouterr()
    assert "usage:" in captured.out + captured.err


SOURCES = ["--roots", "docs.jsonl", "--corpus", "docs.jsonl", *EMBEDDED]
MISTAKES = {
    "negative alpha": (["build", "--alpha", "-1"], "alpha must be >= 0"),
    "zero shard size": (["build", "--shard_size", "0"], "shard_size must be positive"),
    "zero roots": (["build", "--num_roots", "0"], "num_roots must be positive"),
    "missing config": (["build", "--config", "missing.yaml"], "missing.yaml"),
    "unknown setting": (["build", "--config", "bad_key.yaml"], "no_such_setting"),
    "broken yaml": (["build", "--config", "broken.yaml"], "broken.yaml"),
    "empty roots file": (
        ["build", *SOURCES[:1], "empty.jsonl", *SOURCES[2:]],
        "empty.jsonl: the file is empty",
    ),
    "missing roots file": (
        ["build", "--roots", "nope.jsonl", *SOURCES[2:]],
        "'nope.jsonl': no such file or folder (a path, so the Hub was not asked)",
    ),
    "missing model": (
        ["build", *SOURCES, "--lm", "./no/such/model"],
        "'./no/such/model': no such local folder",
    ),
    "negative seed": (["build", "--seed", "-1"], "seed must be >= 0"),
    "nan alpha": (["build", "--alpha", "nan"], "alpha must be >= 0 (and finite), got nan"),
    "zero embedder length": (
        ["build", "--embedder_max_seq_length", "0"],
        "embedder_max_seq_length must be positive",
    ),
    "duplicate root ids": (
        ["build", "--roots", "twice.jsonl", *SOURCES[2:]],
        "the id 'a' is used by more than one row",
    ),
    "index factory faiss cannot make": (
        ["build", *SOURCES, "--index_factory", "Bogus"],
        "index_factory 'Bogus' is not a FAISS index for the embedder's 384-dimensional vectors",
    ),
    "zero eval samples": (["eval", "ruler", "--samples", "0"], "--samples must be positive, got 0"),
    "bad eval depth": (["eval", "niah", "--depths", "150"], "--depths are percents from 0 to 100"),
}


@pytest.mark.parametrize("argv, message", MISTAKES.values(), ids=MISTAKES.keys())
def test_mistakes_get_one_line_and_exit_code_2(argv, message, workdir, capsys):
    before = tree(workdir)
    code, error = run_cli(argv, capsys)
    last = error.strip().splitlines()[-1]
    assert code == 2 and "Traceback" not in error
    assert last.startswith(f"hf-entropylong {' '.join(argv[: 2 if argv[0] != 'build' else 1])}: error: ")
    assert message in last
    after = tree(workdir)
    assert {name: after[name] for name in before} == before  # the user's files are untouched
    assert all(name.startswith("outputs/") for name in set(after) - set(before))  # only the tool's own folder


def test_debug_shows_the_traceback(workdir):
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        cli.main(["build", "--alpha", "-1", "--debug"])


def test_a_folder_that_is_not_a_build_is_refused_and_untouched(workdir, capsys):
    mine = workdir / "mine"
    mine.mkdir()
    (mine / "README.md").write_text("my readme")
    code, error = run_cli(["build", *SOURCES, "--output_dir", "mine"], capsys)
    assert code == 2 and "is not empty (README.md) and holds no build of hf_entropylong" in error
    assert "--overwrite_output_dir" in error and tree(mine) == {"README.md": b"my readme"}
    (workdir / "a_file").write_text("x")
    code, error = run_cli(["build", *SOURCES, "--output_dir", "a_file"], capsys)
    assert code == 2 and "is a file" in error


def test_a_second_build_into_the_same_folder_is_refused(workdir, capsys):
    output_dir = workdir / "out"
    (output_dir / ".cache").mkdir(parents=True)
    (output_dir / ".hf_entropylong.json").write_text('{"published": []}')
    with FileLock(output_dir / ".cache" / "build.lock"):
        code, error = run_cli(["build", *SOURCES, "--output_dir", "out"], capsys)
    assert code == 2 and "another build is writing into" in error and "build.lock" in error


def test_the_console_script_exits_2_with_one_line(tmp_path):
    script = Path(sys.executable).parent / "hf-entropylong"
    done = subprocess.run(
        [str(script), "build", "--alpha", "-1"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "HF_ENTROPYLONG_DEBUG": ""},
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("hf-entropylong build: error: alpha must be >= 0")


def test_the_package_runs_as_a_module_and_exports_build(tmp_path):
    """`python -m hf_entropylong COMMAND` is the console script (what `accelerate launch -m` starts), and
    `from hf_entropylong import build` is the function, not a module."""
    import hf_entropylong
    from hf_entropylong import BuildConfig, build, builder

    assert build is builder.build and BuildConfig is builder.BuildConfig and callable(hf_entropylong.build)
    done = subprocess.run(
        [sys.executable, "-m", "hf_entropylong", "build", "--num_roots", "0"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "hf-entropylong build: error: num_roots must be positive (or unset for all), got 0. (--debug shows the traceback)"
    ]


def test_recipes_are_installed_and_found_from_any_directory(tmp_path, monkeypatch, capsys):
    import configparser
    import fnmatch

    from hf_entropylong.paths import RECIPES_DIR

    monkeypatch.chdir(tmp_path)
    cli.main(["recipes-path"])
    assert (
        Path(capsys.readouterr().out.strip()) == RECIPES_DIR and (RECIPES_DIR / "build/demo.yaml").is_file()
    )
    # the recipe is read (its num_roots overridden): the error is about the value, not a missing file
    code, err = run_cli(["build", "--config", "recipes/build/demo.yaml", "--num_roots", "0"], capsys)
    assert code == 2 and "num_roots must be positive" in err
    # every recipe, template and task file is package data (setup.cfg's patterns), so a wheel ships it
    setup = configparser.ConfigParser()
    setup.read(Path(cli.__file__).parents[1] / "setup.cfg")
    patterns = setup["options.package_data"]["hf_entropylong"].split()
    package = Path(cli.__file__).parent

    def globbed(name: str, pattern: str) -> bool:  # as setuptools globs: `*` never crosses a `/`
        parts, wanted = name.split("/"), pattern.split("/")
        return len(parts) == len(wanted) and all(map(fnmatch.fnmatch, parts, wanted))

    for folder in ("recipes", "templates", "eval/lm_eval_tasks"):
        for path in (package / folder).rglob("*"):
            name = path.relative_to(package).as_posix()
            if path.is_file() and "__pycache__" not in name:
                assert any(globbed(name, pattern) for pattern in patterns), name


def test_a_missing_extra_is_named(capsys):
    def evaluate(argv):
        import lm_eval_missing  # noqa: F401

    def needs_lm_eval(argv):
        raise ModuleNotFoundError("No module named 'lm_eval'", name="lm_eval")

    with pytest.raises(SystemExit) as exit_code:
        cli.run(needs_lm_eval, [], "hf-entropylong eval ruler")
    assert exit_code.value.code == 2
    assert "lm_eval is not installed: pip install 'hf_entropylong[eval]'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.run(evaluate, [], "prog")
    assert "No module named 'lm_eval_missing'" in capsys.readouterr().err  # no extra installs it: as raised
