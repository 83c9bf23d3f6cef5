"""The compiler's imports run one way (frontend → ir → search → lower → bundle).

Two checks per package: every ``import`` statement in its files (module level and inside
functions, read from the source) names only what the layer may use, and importing the
whole package in a fresh interpreter loads none of the heavy libraries of later stages.
The runtime imports nothing from the compiler (``tests/test_runtime_alone.py`` also runs
it in a bare interpreter).
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPILER = ROOT / "compiler" / "fecc"
RUNTIME = ROOT / "runtime" / "fecc_runtime"

#: What each layer may import from fecc / fecc_runtime (a name, or a package with its submodules).
#: ``fecc.errors``, ``fecc.native`` (quieting treelite/tl2cgen) and ``fecc.templating`` are infrastructure.
ALLOWED = {
    "frontend": ("fecc.errors", "fecc.native", "fecc.forest", "fecc.frontend", "fecc_runtime.format",
                 "fecc_runtime.errors"),
    "ir": ("fecc.ir", "fecc.errors"),
    # the backends see the IRs (expressions, the forest) and the bundle format, never the search
    "lower": ("fecc", "fecc.errors", "fecc.native", "fecc.ir", "fecc.forest", "fecc.templating", "fecc.lower",
              "fecc_runtime.format"),
}
#: Modules that importing a layer must not load (the search's and the LLM's stack).
FORBIDDEN_LOADED = ("fecc.search", "fecc.llm", "fecc.transforms", "fecc.driver", "optuna", "xgboost", "lightgbm",
                    "torch", "sklearn")


def _imports(path: Path, package: str) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved against ``package``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # level 1: the file's own package (also for its __init__.py), 2: its parent ...
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            names.add(mod)
            # "from . import trees" / "from .. import __version__": the names may be submodules
            names.update(f"{mod}.{a.name}" for a in node.names if node.level)
    return names


def _ours(name: str) -> bool:
    return name == "fecc" or name.startswith(("fecc.", "fecc_runtime"))


def _allowed(name: str, allowed: tuple[str, ...]) -> bool:
    return any(name == a or name.startswith(a + ".") for a in allowed)


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_only_earlier_stages(layer):
    bad = {}
    for path in sorted((COMPILER / layer).glob("*.py")):
        for name in _imports(path, f"fecc.{layer}"):
            # "from .. import __version__" resolves to fecc.__version__: the package's own attribute
            if _ours(name) and not _allowed(name, ALLOWED[layer]) and name != "fecc.__version__":
                bad.setdefault(path.name, []).append(name)
    assert not bad, f"fecc.{layer} imports later stages: {bad}"


def test_runtime_imports_nothing_from_the_compiler():
    bad = {p.name: sorted(n for n in _imports(p, "fecc_runtime") if n == "fecc" or n.startswith("fecc."))
           for p in RUNTIME.glob("*.py")}
    assert not {k: v for k, v in bad.items() if v}


def test_format_module_is_standalone():
    """fecc_runtime.format is the contract both sides read: numpy, the standard library, the runtime's errors."""
    names = _imports(RUNTIME / "format.py", "fecc_runtime")
    ours = {n for n in names if _ours(n)}
    assert ours <= {"fecc_runtime.errors", "fecc_runtime.errors.BundleError"}, ours
    assert {n.split(".")[0] for n in names} - {"fecc_runtime", "numpy", "__future__", "hashlib", "math", "pathlib",
                                               "typing"} == set()


def test_importing_the_backends_loads_no_search_stack():
    """Every module of fecc.lower and fecc.frontend, imported in one fresh interpreter."""
    mods = [f"fecc.{layer}.{p.stem}" for layer in ("lower", "frontend", "ir")
            for p in sorted((COMPILER / layer).glob("*.py")) if p.stem != "__init__"]
    code = ("import importlib, json, sys\n"
            f"for m in {mods!r}: importlib.import_module(m)\n"
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = json.loads(out)
    hits = sorted(m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN_LOADED))
    assert not hits, f"importing fecc.lower/frontend/ir loaded {hits[:10]}"
