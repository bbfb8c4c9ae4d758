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
import os
from typing import Any

import httpx
import typer

# typer 0.29 vendors click; its exceptions and context live in these private modules.
from typer._click.core import Context
from typer._click.exceptions import ClickException
from typer.core import TyperGroup

from sharechain.cli.common import DataDirOpt, KeyOpt, NetworkOpt, NodeOpt, fail
from sharechain.cli.target import Target, said_first
from sharechain.errors import SharechainError

__all__ = ["TRACEBACK_ENV", "app", "main"]

TRACEBACK_ENV = "SHARECHAIN_TRACEBACK"
"""Set to 1 to see the traceback of an unexpected error instead of its one-line summary."""


def _where(exc: httpx.TransportError) -> str:
    try:
        return f" {exc.request.url}"
    except RuntimeError:  # an error raised before any request was made
        return ""


class _Guarded(TyperGroup):
    """The root command: whatever a command lets escape ends as one line, never a traceback.

    Sharechain errors already say what was wrong and what to do; a peer that does
    not answer, a file that cannot be read and a value the command did not check
    first are named as such (exit 2); anything else is an unexpected error (exit 1).
    """

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ClickException, typer.Exit, typer.Abort):
            raise
        except SharechainError as exc:
            fail(str(exc))
        except httpx.TransportError as exc:
            fail(f"cannot reach{_where(exc)} ({type(exc).__name__}: {exc}); is the node running?")
        except OSError as exc:
            what = f"{exc.filename}: " if exc.filename else ""
            fail(f"{what}{exc.strerror or exc}")
        except (ValueError, OverflowError) as exc:
            fail(str(exc))
        except Exception as exc:
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
    said_first(Target(node, network, key, data_dir))


# Each module defines `register(app)`; keep one line per module.
COMMAND_MODULES = (
    "sharechain.cli.init_cmd",
    "sharechain.cli.notary_cmd",
    "sharechain.cli.chain_cmd",
    "sharechain.cli.bench_cmd",
    "sharechain.cli.node_cmd",
    "sharechain.cli.backup_cmd",  # after node_cmd: it joins the `node` group
    "sharechain.cli.snapshot_cmd",  # after node_cmd: it joins the `node` group
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

for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main() -> None:
    app()
