"""Package-level checks: documented public names, layering, examples."""

import ast
import inspect
import pathlib
import subprocess
import sys

import assimilax as ax


ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "assimilax"


def _public_names():
    return sorted(
        name
        for name, value in vars(ax).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    )


def test_every_public_name_is_documented():
    docs = "\n".join(p.read_text() for p in (ROOT / "docs").rglob("*.md"))
    missing = [name for name in _public_names() if f"`{name}`" not in docs]
    assert not missing, f"public names missing from docs/: {missing}"


def test_every_public_name_has_a_docstring():
    undocumented = [
        name
        for name in _public_names()
        if callable(getattr(ax, name)) and not (getattr(ax, name).__doc__ or "").strip()
    ]
    assert not undocumented, undocumented


def test_bilevel_layer_imports_no_higher_layer():
    # Layer 1 (the engine) must not know about data assimilation or learning.
    higher = {"dynamics", "observations", "priors", "costs", "learning", "io", "cli"}
    offenders = []
    for path in (PACKAGE / "bilevel").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                parts = set(node.module.split("."))
                if parts & higher:
                    offenders.append(f"{path.name}: {node.module}")
    assert not offenders, offenders


def test_quickstart_example_runs():
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    # The implicit hypergradient agrees with the closed form it prints next to.
    line = next(x for x in out.stdout.splitlines() if x.startswith("Implicit (CG)"))
    assert float(line.split()[-2]) < 1e-8
