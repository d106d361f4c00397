"""Package-level checks: documented public names, layering, examples."""

import ast
import inspect
import pathlib
import subprocess
import sys

import assimilax as ax


ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "assimilax"


SUBPACKAGES = (
    "bilevel",
    "dynamics",
    "observations",
    "priors",
    "costs",
    "io",
    "assimilation",
    "learning",
    "plotting",
)


def _names(module):
    return sorted(
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    )


def _public_names():
    names = _names(ax)
    for sub in SUBPACKAGES:
        names += _names(getattr(ax, sub))
    return names


def test_every_public_name_is_documented():
    docs = "\n".join(p.read_text() for p in (ROOT / "docs").rglob("*.md"))
    missing = [name for name in _public_names() if f"`{name}`" not in docs]
    assert not missing, f"public names missing from docs/: {missing}"


def test_layers_import_no_higher_layer():
    # Lower layers never import higher ones: the engine knows nothing of data
    # assimilation; the DA layer nothing of I/O or learning; I/O nothing of
    # solvers and costs; the assimilation drivers (above costs and I/O) nothing
    # of learning.
    model = {"dynamics", "observations", "priors"}  # the DA layer's parts
    above_model = {"costs", "io", "assimilation", "learning", "plotting"}
    rules = {
        "bilevel": model | above_model,
        # The parts of the DA layer import neither each other nor what is above.
        **{part: (model - {part}) | above_model for part in model},
        "costs": {"io", "assimilation", "learning", "plotting", "demos", "cli"},
        # Input/output only: no solver, no cost, no driver.
        "io": {"bilevel", "costs", "assimilation", "learning", "plotting"}
        | {"demos", "cli"},
        "assimilation": {"learning", "plotting", "demos", "cli"},
        "learning": {"plotting", "demos", "cli"},
        "demos": {"cli"},
        # Loaders of real data: xarray only, nothing of the toolkit above them.
        "datasets": model | above_model | {"bilevel", "demos", "cli"},
    }
    offenders = []
    for package, higher in rules.items():
        for path in (PACKAGE / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module:
                    if set(node.module.split(".")) & higher:
                        offenders.append(f"{package}/{path.name}: {node.module}")
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


def test_top_level_holds_the_day_to_day_names_only():
    # The everyday entry points are one import away; the engine's options stay
    # in `assimilax.bilevel` (not flattened into the top level).
    for name in (
        "argmin",
        "fit",
        "assimilate",
        "cycle",
        "StrongConstraint4DVar",
        "WeakConstraint4DVar",
        "ThreeDVar",
        "Implicit",
        "LBFGS",
    ):
        assert hasattr(ax, name), name
    for name in ("InnerState", "AutodiffHVP", "LBFGSPreconditioner", "L1", "Zero"):
        assert not hasattr(ax, name), name
        assert hasattr(ax.bilevel, name), name
