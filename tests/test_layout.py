"""The package layout is the architecture: each subpackage's docstring says which others it may import, and no
module imports past that (imports under `if TYPE_CHECKING:` excepted)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "personalign"
SUBPACKAGES = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))


def allowed_imports(subpackage: str) -> set[str]:
    """The subpackages a subpackage's docstring allows it to import."""
    doc = " ".join(ast.get_docstring(ast.parse((PACKAGE / subpackage / "__init__.py").read_text())).split())
    if "Imports nothing else of personalign" in doc:
        return set()
    if match := re.search(r"May import every other package(?: but (\w+))?\.", doc):
        return set(SUBPACKAGES) - {match.group(1)}
    match = re.search(r"Imports ((?:\w+, )*\w+(?: and \w+)?)\b", doc)
    assert match, f"{subpackage}/__init__.py's docstring does not say what it may import"
    return set(re.split(r", | and ", match.group(1)))


def imported_subpackages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    type_only = {
        id(node)
        for guard in ast.walk(tree)
        if isinstance(guard, ast.If) and "TYPE_CHECKING" in ast.unparse(guard.test)
        for statement in guard.body
        for node in ast.walk(statement)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("personalign."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("personalign.")}
    return found


def test_every_module_lives_in_a_subpackage():
    assert sorted(p.name for p in PACKAGE.glob("*.py")) == ["__init__.py", "__main__.py"]


@pytest.mark.parametrize("subpackage", SUBPACKAGES)
def test_a_subpackage_imports_only_what_its_docstring_allows(subpackage):
    allowed = allowed_imports(subpackage) | {subpackage}
    assert allowed <= set(SUBPACKAGES), f"{subpackage}'s docstring names an unknown subpackage"
    beyond = {
        path.relative_to(PACKAGE).as_posix(): sorted(imported_subpackages(path) - allowed)
        for path in (PACKAGE / subpackage).rglob("*.py")
    }
    assert not {name: found for name, found in beyond.items() if found}


def test_the_layout_check_sees_a_forbidden_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "from personalign.tuning import training\nif TYPE_CHECKING:\n    from personalign.lm import judge\n"
    )
    assert imported_subpackages(module) == {"tuning"}
    assert allowed_imports("core") == set() and allowed_imports("tuning") == {"core", "lm", "personas"}
