"""The import rules of the server's layers: transport -> use cases -> domain, the adapter implements the port."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SERVER = Path(__file__).resolve().parent.parent / "server" / "imageremoval" / "server"
PACKAGE = "imageremoval.server"
LAYERS = ("transport", "domain", "removal", "cleaning", "containerd", "telemetry")
TOP = ("app", "cli", "config", "__main__")
WIRING = {f"{PACKAGE}.app", f"{PACKAGE}.cli", f"{PACKAGE}.__main__"}  # the composition root, and who starts it
WIRE_FORMATS = ("grpc", "google.protobuf", "imageremoval.gen")

# What each layer must not import (a module's own layer is always allowed).
FORBIDDEN: dict[str, tuple[str, ...]] = {
    # use cases see containerd only through the domain's port, and never the wire
    "removal": (f"{PACKAGE}.transport", f"{PACKAGE}.containerd", *WIRE_FORMATS),
    "cleaning": (f"{PACKAGE}.transport", f"{PACKAGE}.containerd", *WIRE_FORMATS),
    # the adapter implements the port: it decides no policy and knows no use case or RPC
    "containerd": (f"{PACKAGE}.transport", f"{PACKAGE}.removal", f"{PACKAGE}.cleaning"),
    # the transport calls use cases; containerd is the adapter's business
    "transport": (f"{PACKAGE}.containerd",),
    # telemetry is imported by anyone but the domain, and imports no use case or adapter itself
    "telemetry": (f"{PACKAGE}.removal", f"{PACKAGE}.cleaning", f"{PACKAGE}.containerd", f"{PACKAGE}.transport"),
}
# The edges that point back, each named in README "Architecture": a new one fails until it is drawn there too.
BACK_EDGES = {
    (f"{PACKAGE}.telemetry.metrics", f"{PACKAGE}.transport.error_status"),  # an outcome label is its gRPC code
    (f"{PACKAGE}.telemetry.rpc", f"{PACKAGE}.transport.credentials"),  # the caller's identity on the RPC span
    (f"{PACKAGE}.telemetry.rpc", f"{PACKAGE}.transport.input_guard"),  # how the interceptor answers bad input
}


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(SERVER.rglob("*.py")):
        parts = path.relative_to(SERVER).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join((PACKAGE, *parts)), path


def _imports(module: str, path: Path) -> set[str]:
    """Every module this one imports, also under TYPE_CHECKING or inside functions; relative ones resolved."""
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return found


def _layer(module: str) -> str:
    return module.removeprefix(f"{PACKAGE}.").split(".", 1)[0]


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(f"{prefix}.")


MODULES = dict(_modules())


def test_every_module_lives_in_a_layer_or_is_the_composition_root() -> None:
    strays = [m for m in MODULES if m != PACKAGE and _layer(m) not in (*LAYERS, *TOP)]
    assert not strays, f"modules outside the layers: {strays}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) == "domain"))
def test_the_domain_imports_only_the_domain_and_the_standard_library(module: str) -> None:
    outside = sorted(
        name
        for name in _imports(module, MODULES[module])
        if name.split(".")[0] not in sys.stdlib_module_names
        and name != "__future__"
        and not _within(name, f"{PACKAGE}.domain")
        and not _within(name, "docker_image")  # reference parsing, a pure library
    )
    assert not outside, f"{module} imports {outside}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) in FORBIDDEN))
def test_each_layer_imports_only_in_the_one_direction(module: str) -> None:
    forbidden = FORBIDDEN[_layer(module)]
    wrong = sorted(
        name
        for name in _imports(module, MODULES[module])
        if any(_within(name, prefix) for prefix in forbidden)
        and not any(module == source and _within(name, target) for source, target in BACK_EDGES)
    )
    assert not wrong, f"{module} ({_layer(module)}) imports {wrong}"


def test_every_back_edge_is_still_there_and_drawn_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for source, target in BACK_EDGES:
        assert any(_within(name, target) for name in _imports(source, MODULES[source])), (source, target)
        for name in (source, target):
            assert f"`{name.removeprefix(PACKAGE + '.').replace('.', '/')}`" in readme, name


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m not in WIRING))
def test_only_the_composition_root_imports_the_composition_root(module: str) -> None:
    wrong = sorted(name for name in _imports(module, MODULES[module]) if any(_within(name, root) for root in WIRING))
    assert not wrong, f"{module} imports the composition root: {wrong}"


def test_the_checker_sees_relative_and_deferred_imports(tmp_path: Path) -> None:
    """The checker itself bites: imports inside functions and relative ones are found and resolved."""
    probe = tmp_path / "probe.py"
    probe.write_text("from ..containerd import client\n\ndef later() -> None:\n    import grpc\n")
    found = _imports(f"{PACKAGE}.domain.probe", probe)
    assert f"{PACKAGE}.containerd.client" in found
    assert "grpc" in found


TESTS = Path(__file__).resolve().parent


@pytest.mark.parametrize("path", sorted(TESTS.glob("*.py")), ids=lambda p: p.name)
def test_test_modules_share_helpers_only_through_tests_support(path: Path) -> None:
    """No test module imports conftest or another test module: shared helpers live in tests/support/."""
    wrong = sorted(
        name
        for name in _imports(f"tests.{path.stem}", path)
        if _within(name, "tests.conftest") or (name.startswith("tests.test_") and name != f"tests.{path.stem}")
    )
    assert not wrong, f"{path.name} imports {wrong}"
