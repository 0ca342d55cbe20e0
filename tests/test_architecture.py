"""The architecture, read from the sources: layers, optional dependencies, private
modules, and the conventions of the public API.

Layers (a module imports its own package or lower layers only)::

    kernels < core (geometry, labels, parameters, random) < phantoms < mr, ct
    < fit, models, losses, metrics < population < io < train, federated < cli
"""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

LAYERS = {
    "jaxsim.kernels": 0,
    "jaxsim": 1,  # the package's own root modules: geometry, labels, ...
    "jaxsim.phantoms": 2,
    "jaxsim.mr": 3,
    "jaxsim.ct": 3,
    "jaxsim.fit": 4,
    "jaxsim.models": 4,
    "jaxsim.losses": 4,
    "jaxsim.metrics": 4,
    "jaxsim.population": 5,
    "jaxsim.io": 6,
    "jaxsim.train": 7,
    "jaxsim.federated": 7,
    "jaxsim.cli": 8,
}
# Root-level modules of the core layer (jaxsim/<name>.py).
CORE = {"geometry", "labels", "parameters", "random"}
# Third-party packages allowed only inside some packages.
RESTRICTED = {
    "h5py": {"jaxsim.io"},
    "nibabel": {"jaxsim.io"},
    "orbax": {"jaxsim.io"},
    "flax": {"jaxsim.models", "jaxsim.train", "jaxsim.federated"},
    "flwr": {"jaxsim.federated"},
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _package(module: str) -> str:
    """The layer unit a module belongs to."""
    parts = module.split(".")
    if len(parts) == 1:
        return "jaxsim"
    head = parts[1]
    if head.startswith("_cli") or head == "cli":
        return "jaxsim.cli"
    if head in CORE or head == "__init__":
        return "jaxsim"
    return f"jaxsim.{head}"


def _sources():
    files = sorted((ROOT / "jaxsim").rglob("*.py"))
    return [f for f in files if "__pycache__" not in f.parts]


def _imports(path: Path, module: str):
    """Absolute names imported by a module (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module
            yield name, node.lineno
            for alias in node.names:  # "from jaxsim.fit import _plot"
                yield f"{name}.{alias.name}", node.lineno


def _violations():
    layer_errors, restricted, private = [], [], []
    for path in _sources():
        module = _module_name(path)
        own = _package(module)
        for name, line in _imports(path, module):
            where = f"{path.relative_to(ROOT)}:{line} imports {name}"
            top = name.split(".")[0]
            if top in RESTRICTED and own not in RESTRICTED[top]:
                restricted.append(where)
            if top != "jaxsim":
                continue
            target = _package(name)
            if name.split(".")[1:2] and name.split(".")[1] in CORE | {"__init__"}:
                target = "jaxsim"
            if target not in LAYERS:
                continue
            if target != own and LAYERS[target] > LAYERS[own]:
                layer_errors.append(where)
            if target != own and any(p.startswith("_") for p in name.split(".")[1:]):
                private.append(where)
    return layer_errors, restricted, private


def test_modules_import_only_their_own_or_lower_layers():
    layer_errors, _, _ = _violations()
    assert not layer_errors, "\n".join(layer_errors)


def test_optional_and_file_dependencies_stay_in_their_packages():
    _, restricted, _ = _violations()
    assert not restricted, "\n".join(restricted)


def test_no_module_imports_another_packages_private_module():
    _, _, private = _violations()
    assert not private, "\n".join(private)


def test_the_checker_finds_what_it_must():
    """The rules fire on examples (so the tests above can fail)."""
    assert _package("jaxsim.phantoms._raster") == "jaxsim.phantoms"
    assert _package("jaxsim._cli_fit") == "jaxsim.cli"
    assert _package("jaxsim.labels") == "jaxsim"
    assert LAYERS[_package("jaxsim.io._database")] > LAYERS[_package("jaxsim.mr")]
    imports = dict(_imports(ROOT / "jaxsim" / "mr" / "_cine.py", "jaxsim.mr._cine"))
    assert "jaxsim.mr._receive" in imports  # relative imports are resolved


# ----------------------------------------------------------------- API conventions
PUBLIC = (
    "jaxsim.kernels",
    "jaxsim.geometry",
    "jaxsim.labels",
    "jaxsim.parameters",
    "jaxsim.random",
    "jaxsim.phantoms",
    "jaxsim.mr",
    "jaxsim.ct",
    "jaxsim.fit",
    "jaxsim.metrics",
    "jaxsim.losses",
    "jaxsim.population",
    "jaxsim.io",
)
ALIASES = {"rng", "rngs_key", "rng_key", "prng_key", "prng", "random_state", "seed"}
# Integer seeds that are persisted identities, not PRNG keys: a database design
# is named by its seed in the file it writes.
SEED_ALLOWED = {"jaxsim.population.PopulationDesign"}


def _public_callables():
    for name in PUBLIC:
        module = importlib.import_module(name)
        for attr in dir(module):
            if attr.startswith("_"):
                continue
            obj = getattr(module, attr)
            if inspect.isfunction(obj) or inspect.isclass(obj):
                if not getattr(obj, "__module__", "").startswith("jaxsim"):
                    continue
                target = obj.__init__ if inspect.isclass(obj) else obj
                try:
                    sig = inspect.signature(target)
                except (TypeError, ValueError):
                    continue
                yield f"{name}.{attr}", sig


def test_key_is_first_or_keyword_only_and_never_aliased():
    bad = []
    for name, sig in _public_callables():
        params = [p for p in sig.parameters.values() if p.name != "self"]
        names = {p.name for p in params}
        if names & ALIASES and name not in SEED_ALLOWED:
            bad.append(f"{name}: PRNG argument alias {sorted(names & ALIASES)}")
        for i, p in enumerate(params):
            if p.name != "key":
                continue
            if i != 0 and p.kind is not inspect.Parameter.KEYWORD_ONLY:
                bad.append(f"{name}: key must be first or keyword-only")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("name", PUBLIC)
def test_public_modules_import(name):
    importlib.import_module(name)
