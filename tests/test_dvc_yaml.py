"""dvc.yaml is the map: each stage lists its script and every facerec module it imports as deps."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT

from facerec.config import read_params

DVC_YAML = read_params(PROJECT_ROOT / "dvc.yaml")  # the same YAML 1.2 reading DVC does


def facerec_imports(path: Path) -> set[str]:
    """facerec modules `path` imports, directly or through other facerec modules, as file paths."""
    seen: set[str] = set()
    pending = [path]
    while pending:
        tree = ast.parse(pending.pop().read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([node.module] if isinstance(node, ast.ImportFrom) and node.module
                     else [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
            for name in names:
                module = f"{name.replace('.', '/')}.py"
                if name.startswith("facerec.") and module not in seen:
                    seen.add(module)
                    pending.append(PROJECT_ROOT / module)
    return seen


@pytest.mark.parametrize("stage", sorted(DVC_YAML["stages"]))
def test_stage_deps_list_every_facerec_module_it_imports(stage):
    declared = {dep for dep in DVC_YAML["stages"][stage]["deps"] if dep.startswith("facerec/")}
    script = PROJECT_ROOT / "stages" / f"{stage}.py"
    assert f"stages/{stage}.py" in DVC_YAML["stages"][stage]["deps"], "the stage's own script is a dependency"
    imported = facerec_imports(script)
    assert declared == imported, (f"{stage}: missing from deps {sorted(imported - declared)}, "
                                  f"listed but not imported {sorted(declared - imported)}")
