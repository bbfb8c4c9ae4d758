"""`sharechain`: the command line.

Every command takes `--data-dir` and `--json`. Where a command runs (the
embedded data directory, a node, a network file's node, with which key) may
also be said once before it: `sharechain --node URL --key FILE dataset list`.
The root callback records it; each command then opens its `Plane` with
`cli.target.open_plane`, its own options winning. Command groups live in
their own modules and register themselves through `COMMAND_MODULES`.

The modules are imported only for the command run: `COMMANDS` names each
top-level command, its one-line help (for `sharechain --help`, which then
imports none of them) and the modules that add to it, registered in
`COMMAND_MODULES` order. Importing all of them took about 0.75 s, more than a
command like `sharechain node status` needs. `tests/cli/test_lazy_commands.py`
holds `COMMANDS` to what the modules really register.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator, MutableMapping
from typing import Any

import typer
import typer.main

# typer 0.29 vendors click; its exceptions and context live in these private modules.
from typer._click.core import Command, Context
from typer._click.exceptions import ClickException
from typer.core import TyperCommand, TyperGroup

from sharechain.cli.options import DataDirOpt, KeyOpt, NetworkOpt, NodeOpt, fail
from sharechain.errors import SharechainError

__all__ = ["COMMANDS", "COMMAND_MODULES", "TRACEBACK_ENV", "app", "main"]

TRACEBACK_ENV = "SHARECHAIN_TRACEBACK"
"""Set to 1 to see the traceback of an unexpected error instead of its one-line summary."""


def _transport_error(exc: Exception) -> str | None:
    """What to say of an HTTP transport error (a peer that does not answer); None if `exc`
    is not one. httpx is only loaded if a command used it, so only then can it be one."""
    httpx = sys.modules.get("httpx")
    if httpx is None or not isinstance(exc, httpx.TransportError):
        return None
    try:
        where = f" {exc.request.url}"
    except RuntimeError:  # an error raised before any request was made
        where = ""
    return f"cannot reach{where} ({type(exc).__name__}: {exc}); is the node running?"


# Each module defines `register(app)`; keep one line per module.
COMMAND_MODULES = (
    "sharechain.cli.init_cmd",
    "sharechain.cli.notary_cmd",
    "sharechain.cli.chain_cmd",
    "sharechain.cli.bench_cmd",
    "sharechain.cli.node_cmd",
    "sharechain.cli.backup_cmd",  # after node_cmd: it joins the `node` group
    "sharechain.cli.snapshot_cmd",  # after node_cmd: it joins the `node` group
    "sharechain.cli.evidence_cmd",  # after node_cmd: it joins the `node` group
    "sharechain.cli.network_cmd",
    "sharechain.cli.operate_cmd",  # after node_cmd and network_cmd: it joins their groups
    "sharechain.cli.org_cmd",
    "sharechain.cli.dataset_cmd",
    "sharechain.cli.request_cmd",
    "sharechain.cli.grant_cmd",
    "sharechain.cli.audit_cmd",
    "sharechain.cli.alerts_cmd",
    "sharechain.cli.ui_cmd",
    "sharechain.cli.mask_cmd",
    "sharechain.cli.profile_cmd",
    "sharechain.cli.sharing_cmd",  # after dataset_cmd and grant_cmd: it joins their groups
    "sharechain.cli.prove_cmd",
    "sharechain.cli.proofs_cmd",
    "sharechain.cli.anchor_cmd",
    "sharechain.cli.compute_cmd",
)

_NODE = ("node_cmd", "backup_cmd", "snapshot_cmd", "evidence_cmd", "operate_cmd")
_PROOFS = ("proofs_cmd",)
_COMPUTE = ("compute_cmd",)
_SHARING = ("dataset_cmd", "grant_cmd", "sharing_cmd")
"""sharing_cmd adds to the `dataset` and `grant` groups it finds registered (or makes
its own): they are registered first, whichever of the three commands comes first."""
COMMANDS: dict[str, tuple[str, tuple[str, ...]]] = {
    # name: (its help in `sharechain --help`, the modules (of COMMAND_MODULES) adding to it)
    "init": (
        "Create a development consortium: genesis and key files for every organisation.",
        ("init_cmd",),
    ),
    "notarize": ("Record a file's SHA-256 on the chain.", ("notary_cmd",)),
    "endorse": ("Countersign another organisation's notary record.", ("notary_cmd",)),
    "check": (
        "Check a file against the chain: exit 0 if recorded (with proof), 1 if not.",
        ("notary_cmd",),
    ),
    "bench": ("Run one benchmark and print its figures.", ("bench_cmd",)),
    "audit": (
        "The audit trail of a dataset, a grant or an organisation (every proof verified).",
        ("audit_cmd",),
    ),
    "fetch": (
        "Obtain the key under GRANT, decrypt, check every digest, sign the read receipt.",
        _SHARING,
    ),
    "verify-bundle": (
        "Check a proof bundle offline: exit 0 if it proves its object, 1 and why if not.",
        _PROOFS,
    ),
    "verify-export": (
        "Check an export file offline: every block replayed, every line as written, the seal.",
        _PROOFS,
    ),
    "chain": ("Inspect, verify, export and prove the ledger.", ("chain_cmd",)),
    "node": ("Run an organisation's node (REST API, ordering, replication).", _NODE),
    "network": (
        "A local consortium network: one node per organisation.",
        ("network_cmd", "operate_cmd"),
    ),
    "org": ("Membership: propose, vote, remove, rotate-key, list.", ("org_cmd",)),
    "dataset": (
        "Datasets: register, version, derive, retire, list, show.",
        _SHARING,
    ),
    "request": ("Access requests: create, approve, reject, list.", ("request_cmd",)),
    "grant": ("Grants: list, revoke.", _SHARING),
    "alerts": ("Risk alerts: list, clear.", ("alerts_cmd",)),
    "ui": ("The node's browser console (served under /ui).", ("ui_cmd",)),
    "mask": ("Desensitise tables: check a profile, apply it.", ("mask_cmd",)),
    "profile": ("Masking profiles: register, show, list.", ("profile_cmd",)),
    "prove": ("Zero-knowledge proofs about committed values.", ("prove_cmd",)),
    "verify": ("Check zero-knowledge proofs.", ("prove_cmd",)),
    "checkpoint": ("Show and verify signed checkpoints (C2SP notes).", _PROOFS),
    "proof": ("Checkpoints, consistency proofs and proof bundles of a chain.", _PROOFS),
    "credential": ("SD-JWT membership credentials (RFC 9901).", _PROOFS),
    "disclosure": ("Records whose fields can be shown one by one.", _PROOFS),
    "anchor": ("Follow another consortium and record its checkpoints.", ("anchor_cmd",)),
    "timestamp": ("RFC 3161 timestamps of checkpoints.", ("anchor_cmd",)),
    "psi": ("Private set intersection: offer (holder), match (client).", _COMPUTE),
    "aggregate": ("Secure aggregation: propose, join, submit, result.", _COMPUTE),
    "compute": ("Computation sessions (PSI, aggregation): list, show.", _COMPUTE),
}


class _Commands(MutableMapping[str, Command]):
    """The root's commands by name, each built when first looked up.

    Looking one up imports and registers the modules that add to it (once
    each, in `COMMAND_MODULES` order) into a registry of their own and builds
    its click command there. While the root prints its help (`listing`), a
    command not built yet is shown by a stand-in carrying its `COMMANDS` help.
    """

    def __init__(self) -> None:
        self._registry = typer.Typer(add_completion=False)
        self._registry.callback()(lambda: None)  # a group, even with one command
        self._registered: set[str] = set()
        self._built: dict[str, Command] = {}
        self.listing = False

    def __getitem__(self, name: str) -> Command:
        built = self._built.get(name)
        if built is not None:
            return built
        if name not in COMMANDS:
            raise KeyError(name)
        if self.listing:
            return TyperCommand(name=name, help=COMMANDS[name][0])
        wanted = COMMANDS[name][1]
        for module in COMMAND_MODULES:
            short = module.rsplit(".", 1)[1]
            if short in wanted and short not in self._registered:
                importlib.import_module(module).register(self._registry)
                self._registered.add(short)
        built = self._built[name] = typer.main.get_group(self._registry).commands[name]
        return built

    def __setitem__(self, name: str, command: Command) -> None:
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        del self._built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(COMMANDS)

    def __len__(self) -> int:
        return len(COMMANDS)


_COMMANDS = _Commands()


class _Guarded(TyperGroup):
    """The root command: commands loaded on demand (`_Commands`), and whatever a command
    lets escape ends as one line, never a traceback.

    Sharechain errors already say what was wrong and what to do; a peer that does
    not answer, a file that cannot be read and a value the command did not check
    first are named as such (exit 2); anything else is an unexpected error (exit 1).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands = _COMMANDS

    def list_commands(self, ctx: Context) -> list[str]:
        return list(self.commands)

    def format_help(self, ctx: Context, formatter: Any) -> None:
        _COMMANDS.listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            _COMMANDS.listing = False

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ClickException, typer.Exit, typer.Abort):
            raise
        except SharechainError as exc:
            fail(str(exc))
        except Exception as exc:
            unreachable = _transport_error(exc)
            if unreachable is not None:
                fail(unreachable)
            if isinstance(exc, OSError):
                what = f"{exc.filename}: " if exc.filename else ""
                fail(f"{what}{exc.strerror or exc}")
            if isinstance(exc, ValueError | OverflowError):
                fail(str(exc))
            if os.environ.get(TRACEBACK_ENV) == "1":
                raise
            fail(
                f"unexpected {type(exc).__name__}: {exc} (set {TRACEBACK_ENV}=1 to see where)",
                code=1,
            )


app = typer.Typer(
    name="sharechain",
    cls=_Guarded,
    help="A consortium blockchain for governed data sharing between organisations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    data_dir: DataDirOpt = None,
    node: NodeOpt = None,
    network: NetworkOpt = None,
    key: KeyOpt = None,
) -> None:
    """A consortium blockchain for governed data sharing between organisations."""
    from sharechain.cli.target import Target, said_first

    said_first(Target(node, network, key, data_dir))


def main() -> None:
    app()
