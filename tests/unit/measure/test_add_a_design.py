"""docs/add-a-design.md stays true: what it names exists, and every design has its user class.

The locustfile is read as source (ast), never imported: importing Locust patches the standard
library for the whole test process.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

from loadtests import modes

ROOT = Path(__file__).resolve().parents[3]
CHECKLIST = ROOT / "docs" / "add-a-design.md"
LOCUSTFILE = ROOT / "loadtests" / "locustfile.py"
PACKAGES = ("loadtests", "services", "devstack", "tests")


def spans() -> list[str]:
    return re.findall(r"`([^`\n]+)`", CHECKLIST.read_text())


def top_level_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
            for target in node.targets:
                if isinstance(target, ast.Tuple):
                    names |= {e.id for e in target.elts if isinstance(e, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def test_every_path_it_names_exists() -> None:
    paths = [s for s in spans() if "/" in s and " " not in s and "<" not in s]
    # Not /metrics (a URL path) nor reports/ (what a run writes, not in a fresh clone).
    paths = [p for p in paths if not p.startswith(("/", "reports/"))]
    assert "loadtests/modes.py" in paths and "loadtests/locustfile.py" in paths
    missing = [p for p in paths if not (ROOT / p).exists()]
    assert not missing, missing


def test_every_python_name_it_names_exists() -> None:
    dotted = [s for s in spans() if re.fullmatch(r"[A-Za-z_]\w*(\.\w+)+", s)]
    dotted = [s for s in dotted if s.split(".")[0] in PACKAGES]
    assert "loadtests.modes.MODES" in dotted
    missing = []
    for name in dotted:
        module, attribute = name.rsplit(".", 1)
        source = ROOT.joinpath(*module.split(".")).with_suffix(".py")
        if not source.is_file() or attribute not in top_level_names(source):
            missing.append(name)
    assert not missing, missing


def test_it_names_every_field_of_a_mode() -> None:
    named = set(spans())
    fields = {f.name for f in dataclasses.fields(modes.Mode)}
    assert fields and fields <= named, fields - named


def mode_classes() -> dict[str, tuple[list[str], str | None]]:
    """The locustfile's classes: name -> (base class names, the name assigned to `mode`)."""
    classes: dict[str, tuple[list[str], str | None]] = {}
    for node in ast.parse(LOCUSTFILE.read_text()).body:
        if not isinstance(node, ast.ClassDef):
            continue
        mode = None
        for statement in node.body:
            if (
                isinstance(statement, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "mode" for t in statement.targets)
                and isinstance(statement.value, ast.Name)
            ):
                mode = statement.value.id
        bases = [b.id for b in node.bases if isinstance(b, ast.Name)]
        classes[node.name] = (bases, mode)
    return classes


def test_every_mode_has_its_locust_user_class() -> None:
    classes = mode_classes()
    for mode in modes.MODES:
        assert mode.user_class in classes, f"{mode.name}: no class {mode.user_class}"
        _, assigned = classes[mode.user_class]
        assert assigned is not None, f"{mode.user_class} sets no mode"
        assert getattr(modes, assigned, None) is mode, f"{mode.user_class}.mode is {assigned}"
        ancestors, seen = [mode.user_class], set()
        while ancestors:
            current = ancestors.pop()
            seen.add(current)
            ancestors += [b for b in classes.get(current, ([], None))[0] if b not in seen]
        assert "AuthscaleUser" in seen, f"{mode.user_class} is not an AuthscaleUser"
