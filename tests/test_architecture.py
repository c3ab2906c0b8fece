"""The package's shape as README's Architecture section states it: every module named exists, imports only point
down the table's rows (no cycle), and no module outgrows ~400 lines."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hf_entropylong"


def _architecture_rows() -> list[list[str]]:
    """The module paths of each row of README's Architecture table, top row first."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [re.findall(r"`([\w/]+(?:\.py|/))`", row.split(" | ")[0]) for row in rows]


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The hf_entropylong modules `path` imports, relative imports resolved (a package counts as its __init__)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[: len(base) - node.level + 1] if node.level else []
            target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            names = [f"{target}.{alias.name}" for alias in node.names]
            found |= {n for n in names if _path_of(n)} or {target}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {name for name in found if name.startswith("hf_entropylong") and _path_of(name)}


def _path_of(module: str) -> Path | None:
    relative = Path(*module.split("."))
    for candidate in (ROOT / relative.with_suffix(".py"), ROOT / relative / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _layer_of() -> dict[str, int]:
    """Each package module's row in the Architecture table (a folder's row covers the modules under it)."""
    layers = {}
    for index, row in enumerate(_architecture_rows()):
        for entry in row:
            if entry.endswith("/"):
                for path in (PACKAGE / entry).rglob("*.py"):
                    layers.setdefault(_module_name(path), index)
            else:
                layers[_module_name(PACKAGE / entry)] = index
                if "/" in entry:  # a subpackage's __init__ sits with its first module
                    layers.setdefault(_module_name(PACKAGE / entry.split("/")[0] / "__init__.py"), index)
    return layers


def test_every_module_the_architecture_names_exists():
    named = [entry for row in _architecture_rows() for entry in row]
    assert len(named) > 20
    missing = [entry for entry in named if not (PACKAGE / entry).exists()]
    assert not missing


def test_every_module_has_a_row_and_imports_only_its_row_or_below():
    layers = _layer_of()
    modules = [path for path in PACKAGE.rglob("*.py") if _module_name(path) != "hf_entropylong.__main__"]
    unplaced = [_module_name(path) for path in modules if _module_name(path) not in layers]
    assert unplaced == ["hf_entropylong"]  # the package's own __init__: the lazy entry points
    upward = [
        (_module_name(path), imported)
        for path in modules
        if _module_name(path) in layers
        for imported in _imports(path)
        if layers.get(imported, -1) > layers[_module_name(path)]
    ]
    assert not upward


def test_no_import_cycle():
    graph = {_module_name(path): _imports(path) for path in PACKAGE.rglob("*.py")}
    state: dict[str, str] = {}

    def visit(module: str, trail: tuple[str, ...]) -> None:
        if state.get(module) == "done":
            return
        assert state.get(module) != "open", " -> ".join((*trail, module))
        state[module] = "open"
        for imported in graph.get(module, ()):
            if imported != module and not module.startswith(imported + "."):  # a package's own __init__
                visit(imported, (*trail, module))
        state[module] = "done"

    for module in graph:
        visit(module, ())


def test_modules_stay_under_about_400_lines():
    long = {
        str(path.relative_to(ROOT)): n
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > 420
    }
    assert not long
