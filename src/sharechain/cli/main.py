"""`sharechain`: the command line.

Every command takes `--data-dir` and `--json`. Where a command runs (the
embedded data directory, a node, a network file's node, with which key) may
also be said once before it: `sharechain --node URL --key FILE dataset list`.
The root callback records it; each command then opens its `Plane` with
`cli.target.open_plane`, its own options winning. Command groups live in
their own modules and register themselves here through `COMMAND_MODULES`.
"""

from __future__ import annotations

import importlib

import typer

from sharechain.cli.common import DataDirOpt, KeyOpt, NetworkOpt, NodeOpt
from sharechain.cli.target import Target, said_first

__all__ = ["app", "main"]

app = typer.Typer(
    name="sharechain",
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
    said_first(Target(node, network, key, data_dir))


# Each module defines `register(app)`; keep one line per module.
COMMAND_MODULES = (
    "sharechain.cli.init_cmd",
    "sharechain.cli.notary_cmd",
    "sharechain.cli.chain_cmd",
    "sharechain.cli.bench_cmd",
    "sharechain.cli.node_cmd",
    "sharechain.cli.network_cmd",
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
)

for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main() -> None:
    app()
