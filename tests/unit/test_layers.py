"""The package layout is the architecture: each stage imports only the stages below it."""
import ast
from pathlib import Path

import harness

PKG = Path(harness.__file__).resolve().parent
# a stage may import the stages of a lower rank (and its own); errors.py is shared by all
RANK = {"errors": 0, "vm": 1, "crash": 1, "pins": 2, "results": 3, "kbuild": 3,
        "cli": 4, "pytest_plugin": 4, "__main__": 5}


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "harness":
            parts = node.module.split(".")
            if len(parts) > 1:
                yield parts[1]
            else:  # from harness import x
                yield from (a.name for a in node.names)
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == "harness" and len(parts) > 1:
                    yield parts[1]


def test_every_module_belongs_to_a_stage():
    tops = {p.stem if p.is_file() else p.name for p in PKG.iterdir()
            if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())}
    assert tops <= set(RANK), f"modules with no stage in RANK: {sorted(tops - set(RANK))}"


def test_imports_run_one_way():
    bad = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG)
        stage = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        if stage == "__init__":
            continue
        for target in _imports(path):
            if target in RANK and target != stage and RANK[target] >= RANK[stage]:
                bad.append(f"{rel} imports harness.{target}")
    assert not bad, "imports that run up or sideways:\n" + "\n".join(bad)
