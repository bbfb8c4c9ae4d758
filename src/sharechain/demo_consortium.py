"""Where the demo's story plays: the embedded default, or a local network of nodes.

`Consortium` gives each organisation the `Plane` it acts through: the one
embedded Plane of a data directory, or a Plane connected to the
organisation's own node (signing as it) in a `LocalNetwork` of node
processes ordered by three etcd members (`demo_network` lays it out). It can
take an organisation's node down and up, and names every ledger to
re-verify at the end.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

from sharechain.node.launcher import LocalNetwork, node_data_dir
from sharechain.ordering.etcd_process import free_ports
from sharechain.sharing.plane import NETWORK_FILE, Plane
from sharechain.storage.datadir import OrgSpec, init_consortium

__all__ = ["Consortium", "demo_network"]


class Consortium:
    """The demo's organisations, embedded (`net` None) or each behind its own node.

    `plane(org)` is how `org` acts: the one embedded Plane, or a Plane connected to
    `org`'s own node and signing as it.
    """

    def __init__(self, base: Path, net: LocalNetwork | None) -> None:
        self.base = base
        self.net = net
        self._planes: dict[str, Plane] = {}
        self.key_files: dict[str, Path] = {}
        """Key files of organisations admitted later, kept by their own node (not in `base`)."""

    def plane(self, org: str) -> Plane:
        key = org if self.net is not None else ""
        if key not in self._planes:
            if self.net is None:
                self._planes[key] = Plane.local(self.base)
            else:
                self._planes[key] = Plane.connect(
                    network=self.net.base, as_org=org, key=self.key_files.get(org)
                )
        return self._planes[key]

    def stop(self, org: str) -> None:
        """Take `org`'s node down (embedded: it is merely treated as offline)."""
        if self.net is not None:
            self.net.stop_node(org)

    def start(self, org: str) -> None:
        if self.net is not None:
            self.net.start_node(org)
            self.net.wait_ready([org], timeout=60)

    def ledgers(self) -> dict[str, Path]:
        """The data directory of every ledger to re-verify, by who keeps it."""
        if self.net is None:
            return {"embedded": self.base}
        return {n.org: n.data_dir for n in self.net.nodes}

    def settled(self, timeout: float = 30.0) -> dict[str, str]:
        """Every ledger's state root, once all nodes have the same head."""
        deadline = time.monotonic() + timeout
        while True:
            heads = {}
            for org in self.ledgers():
                info = self.plane(org).chain_info()
                heads[org] = (info.height, info.head_hash.hex(), info.state_root.hex())
            if len(set(heads.values())) == 1 or time.monotonic() > deadline:
                return {org: root for org, (_, _, root) in heads.items()}
            time.sleep(0.1)

    def close(self) -> None:
        for plane in self._planes.values():
            plane.close()
        self._planes.clear()
        if self.net is not None:
            self.net.down()


def demo_network(base: Path, orgs: Sequence[OrgSpec]) -> LocalNetwork:
    """`orgs` laid out as a local etcd network in `base` (not started yet)."""
    base.mkdir(parents=True, exist_ok=True)
    init_consortium(base / "consortium", orgs, consortium="health-data-network")
    nodes = [
        {
            "org": spec.id,
            "port": port,
            "data_dir": str(node_data_dir(base / "consortium", base / "nodes" / spec.id, spec.id)),
            "log": str(base / "logs" / f"{spec.id}.log"),
        }
        for spec, port in zip(orgs, free_ports(len(orgs)), strict=True)
    ]
    layout = {"version": 1, "state": "created", "ordering": "etcd", "nodes": nodes}
    (base / NETWORK_FILE).write_text(json.dumps({**layout, "etcd_base_port": None}))
    return LocalNetwork(base, node_options=("--log-level", "warning", "--max-wait-ms", "10"))
