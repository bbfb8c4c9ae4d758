"""The layering contract of `docs/design.md`, checked on every import in src/.

    cli/ web/ bench/ demo*.py          faces
    node/                              a running organisation
    api/ sharing/                      the wire · the data plane
    ordering/ storage/ privacy/        ordering · blobs, vault, sealing · privacy computing
    contracts/                         the data-sharing state machine
    ledger/                            transactions, blocks, proofs, stores
    crypto/                            keys, signatures, hashing, AEAD
    codec.py errors.py handoff.py text.py  usable by every layer

A module may import its own layer and the layers below it, never one above,
and that holds for imports inside functions too (an AST walk sees them all,
`if TYPE_CHECKING:` blocks included: a type is a dependency as well).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "sharechain"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("codec", "_cborx", "errors", "handoff", "text"),
    ("crypto",),
    ("ledger",),
    ("contracts",),
    ("ordering", "storage", "privacy"),
    ("api", "sharing"),
    ("node",),
    ("cli", "web", "bench", "demo", "demo_consortium", "demo_computing", "demo_join", "faults"),
)
"""Bottom first: a module of layer i may import layers 0..i only."""

RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


@dataclass(frozen=True, slots=True)
class Violation:
    """One import of a higher layer."""

    path: str
    """The importing file, relative to src/."""
    line: int
    """Where the import is."""
    importer: str
    """The importing top-level unit (a package under sharechain/ or a module)."""
    imported: str
    """The full name of the imported module."""

    def __str__(self) -> str:
        return (
            f"{self.path}:{self.line}: {self.importer} (layer {RANK[self.importer]}) imports "
            f"{self.imported} (layer {RANK[_unit(self.imported)]}), a higher layer"
        )


def _unit(module: str) -> str:
    """`sharechain.node.app` -> `node`; `sharechain.codec` -> `codec`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports_of(path: Path, root: Path = SRC) -> list[tuple[int, str]]:
    """(line, absolute module name) of every sharechain import in `path`, wherever it is."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    here = _module_name(path, root)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            # `from sharechain import node` imports the package `sharechain.node`.
            names = [f"{module}.{a.name}" for a in node.names] if module == PACKAGE else [module]
            found += [(node.lineno, m) for m in names]
    return [(line, m) for line, m in found if m == PACKAGE or m.startswith(PACKAGE + ".")]


def violations(root: Path = SRC) -> list[Violation]:
    out: list[Violation] = []
    for path in sorted((root / PACKAGE).rglob("*.py")):
        importer = _unit(_module_name(path, root))
        if importer == "":  # sharechain/__init__.py re-exports the root error only
            continue
        for line, imported in imports_of(path, root):
            unit = _unit(imported)
            if unit and unit != importer and RANK[unit] > RANK[importer]:
                out.append(Violation(str(path.relative_to(root)), line, importer, imported))
    return out


def test_every_unit_has_a_layer() -> None:
    units = {
        p.stem if p.is_file() else p.name
        for p in (SRC / PACKAGE).iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()
    }
    assert units - RANK.keys() == set(), "give each new package or module a layer in LAYERS"


def test_no_module_imports_a_higher_layer() -> None:
    found = violations()
    assert not found, "imports against the layering:\n" + "\n".join(map(str, found))


def test_node_never_imports_cli() -> None:
    found = [
        (p, line, m)
        for p in sorted((SRC / PACKAGE / "node").rglob("*.py"))
        for line, m in imports_of(p)
        if _unit(m) == "cli"
    ]
    assert found == []


@pytest.mark.parametrize(
    ("importer", "source", "bad"),
    [
        ("ledger/x.py", "from sharechain.contracts import queries\n", True),
        ("crypto/x.py", "def f():\n    import sharechain.ledger.blocks\n", True),
        ("node/x.py", "from sharechain import cli\n", True),
        ("contracts/x.py", "from ..api import wire\n", True),
        ("api/x.py", "from sharechain.sharing import custody\n", False),
        ("storage/x.py", "from sharechain.errors import SharechainError\n", False),
        ("codec.py", "from sharechain.crypto import signing\n", True),
    ],
)
def test_the_walk_catches_upward_imports(
    tmp_path: Path, importer: str, source: str, bad: bool
) -> None:
    path = tmp_path / PACKAGE / importer
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source, encoding="utf-8")
    found = violations(tmp_path)
    assert bool(found) is bad, [str(v) for v in found]
    if bad:
        assert importer in str(found[0]) and "higher layer" in str(found[0])
