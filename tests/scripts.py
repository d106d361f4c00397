"""Import the repository's scripts (examples, benchmarks) by path: they are not a
package."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
BENCHMARKS = ROOT / "benchmarks"


def load_script(path: Path, name: str | None = None) -> ModuleType:
    """Execute the script at `path` as a module named `name` (default: its stem),
    registered in `sys.modules` (dataclasses defined in it need that)."""
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def load_example(name: str) -> ModuleType:
    """``examples/NAME.py`` as a module."""
    return load_script(EXAMPLES / f"{name}.py")


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/NAME.py`` as a module ``_bench_NAME``; its folder goes on
    `sys.path` for the benchmarks' shared `_common` helper."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return load_script(BENCHMARKS / f"{name}.py", f"_bench_{name}")
