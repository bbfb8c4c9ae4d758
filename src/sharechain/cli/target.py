"""Where a command runs, and the `Plane` it gets: the embedded default or a node.

Without `--node` or `--network` a command runs on the embedded default (the
data directory of `--data-dir`, `$SHARECHAIN_HOME` or `~/.sharechain`).
`--node URL` (or `$SHARECHAIN_NODE`) talks to one node; `--network FILE` (or
`$SHARECHAIN_NETWORK`, the `network.json` of `sharechain network up`, or its
directory) picks the signing organisation's node from the network file and
its key from the network's consortium directory. The options may come before
the command (`sharechain --node URL dataset list`, read by the root callback
in `cli.main`) or after it; the command's own win.

Who signs in node mode: `--as ORG` with ORG's key file from `--data-dir` (or
`--key FILE`); a query command without `--as` signs as the organisation of
`--key FILE`, as the only organisation whose key the data directory holds,
or (with a network file) as the first node's organisation. `open_plane`
gives every command the same `Plane` either way (`sharechain.sharing.plane`),
so both modes print the same output.

Errors: an unreachable node names the URL and what to do; the node's own
explanation of a 401 or 403 is printed as it is; never a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from pathlib import Path

import httpx

from sharechain.cli.common import err_console, fail, handle_errors, resolve_data_dir
from sharechain.errors import SharechainError
from sharechain.sharing.plane import Plane, load_network

__all__ = ["Target", "key_dir", "network_data_dir", "node_errors", "open_plane", "said_first"]


@dataclass(frozen=True, slots=True)
class Target:
    """Where a command runs: the embedded default, a node, or a network file's node."""

    node: str | None = None
    """`--node URL`."""
    network: Path | None = None
    """`--network FILE` (a `network.json` or the directory holding it)."""
    key: Path | None = None
    """`--key FILE`: the signing organisation's key file."""
    data_dir: Path | None = None
    """`--data-dir` given before the command (the command's own wins)."""

    @property
    def remote(self) -> bool:
        return self.node is not None or self.network is not None

    def under(self, root: Target | None) -> Target:
        """These options, with what the root callback read filling the gaps."""
        if root is None:
            return self
        return replace(
            self,
            node=self.node if self.node is not None else root.node,
            network=self.network if self.network is not None else root.network,
            key=self.key if self.key is not None else root.key,
            data_dir=self.data_dir if self.data_dir is not None else root.data_dir,
        )


_said_first: ContextVar[Target | None] = ContextVar("sharechain_said_first", default=None)
"""What the root callback read before the command (one invocation at a time)."""


def said_first(target: Target) -> None:
    """Record the options given before the command (the root callback calls this)."""
    _said_first.set(target)


def _root() -> Target | None:
    return _said_first.get()


def _warn(message: str) -> None:
    err_console.print(message, highlight=False)


@contextmanager
def open_plane(
    data_dir: Path | None,
    target: Target = Target(),
    as_org: str | None = None,
    *,
    check_store: bool = True,
) -> Iterator[Plane]:
    """The `Plane` of `target` (with the root's options), signing as `as_org` in node mode."""
    target = replace(target, data_dir=data_dir).under(_root())
    data_dir = target.data_dir
    if not target.remote:
        with handle_errors():
            plane = Plane.local(resolve_data_dir(data_dir), warn=_warn, check_store=check_store)
        try:
            with handle_errors():
                yield plane
        finally:
            plane.close()
        return
    with handle_errors():
        plane = Plane.connect(
            target.node,
            network=target.network,
            key=target.key,
            as_org=as_org,
            data_dir=data_dir,
            warn=_warn,
        )
    try:
        with node_errors(plane.where):
            yield plane
    finally:
        plane.close()


def key_dir(data_dir: Path | None, target: Target) -> Path:
    """Where node mode keeps key files: the network's consortium directory or `--data-dir`."""
    target = replace(target, data_dir=data_dir).under(_root())
    if target.network is not None:
        with handle_errors():
            return Path(load_network(target.network)["consortium_dir"])
    return resolve_data_dir(target.data_dir)


def network_data_dir(target: Target, org: str) -> Path | None:
    """The data directory of `org`'s node in the network file of `target` (None without one)."""
    target = target.under(_root())
    if target.network is None:
        return None
    with handle_errors():
        listed = load_network(target.network)["nodes"]
    for n in listed:
        if n.get("org") == org and n.get("data_dir"):
            return Path(str(n["data_dir"]))
    return None


@contextmanager
def node_errors(url: str) -> Iterator[None]:
    """An unreachable node or a refusal becomes a clear message and a non-zero exit."""
    try:
        yield
    except httpx.TransportError as exc:
        url = _where(exc, url)
        fail(
            f"cannot reach the node at {url} ({type(exc).__name__}: {exc or 'no answer'}); "
            "is it running? Check with `sharechain network status` (or start it with "
            "`sharechain network up` / `sharechain node start`)"
        )
    except SharechainError as exc:
        fail(f"the node at {url} refused: {exc}" if _refusal(exc) else str(exc))


def _where(exc: httpx.TransportError, default: str) -> str:
    """The node a failed request went to (a custodian's, not always the command's node)."""
    try:
        u = exc.request.url
    except RuntimeError:  # raised before a request was made
        return default
    return f"{u.scheme}://{u.netloc.decode('ascii')}"


def _refusal(exc: SharechainError) -> bool:
    return "HTTP 401" in str(exc) or "HTTP 403" in str(exc)
