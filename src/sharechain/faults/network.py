"""A local network whose links and disks can be broken: the faults' handles.

`ProxiedNetwork` is a `LocalNetwork` whose nodes reach each other (and the
etcd members) through a `LinkProxy` per link, so a link can be slowed or cut;
its nodes can be killed, paused (by process id), restarted with a skewed
clock (`sharechain.faults.skewed_node`), and, with `small_disks`, each data
directory is a tmpfs of its own whose disk can be filled to the last byte
(mounting needs root). `sharechain.faults.schedule` drives the faults.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Final

from sharechain.errors import ConfigError
from sharechain.faults.proxy import LinkProxy
from sharechain.node.launcher import LocalNetwork, NodeSpec

__all__ = ["LINK_DELAY", "ProxiedNetwork"]

_DISK_SIZE: Final = "256m"
"""Each node's tmpfs data directory (`small_disks`)."""
LINK_DELAY: Final = 0.2
"""Seconds a delayed link adds each way."""
_BALLAST: Final = "ballast"
"""The file that fills a disk."""


class ProxiedNetwork(LocalNetwork):
    """A `LocalNetwork` whose every node-to-node and node-to-etcd link has its own proxy."""

    def __init__(self, base: Path, *, small_disks: bool = False, **options: Any) -> None:
        self.links: dict[tuple[str, str], LinkProxy] = {}
        self.skews: dict[str, float] = {}
        """Nodes running with a skewed clock, and by how much."""
        self.disks: list[Path] = []
        """Data directories mounted as a tmpfs of their own (`small_disks`)."""
        super().__init__(base, **options)
        if small_disks:
            for node in self.nodes:
                self._mount(node.data_dir)

    def _mount(self, data_dir: Path) -> None:
        aside = data_dir.with_name(data_dir.name + ".aside")
        data_dir.rename(aside)
        data_dir.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={_DISK_SIZE}", "tmpfs", str(data_dir)],
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            data_dir.rmdir()
            aside.rename(data_dir)
            self.release_disks()
            raise ConfigError(
                "the fill fault needs a small disk per node, a tmpfs: "
                + done.stderr.decode().strip()
            )
        self.disks.append(data_dir)
        shutil.copytree(aside, data_dir, dirs_exist_ok=True)
        shutil.rmtree(aside)

    def release_disks(self) -> None:
        """Unmount the nodes' tmpfs data directories (their stores are read before)."""
        for disk in self.disks:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True, check=False)
        self.disks = []

    def fill(self, org: str) -> None:
        """Fill `org`'s data directory's disk to the last byte."""
        spec = self.spec(org)
        if spec.data_dir not in self.disks:
            raise ConfigError(f"{org}'s data directory is not a small disk: run with small_disks")
        fd = os.open(spec.data_dir / _BALLAST, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for size in (1 << 20, 4096, 1):
                with contextlib.suppress(OSError):
                    while True:
                        os.write(fd, bytes(size))
        finally:
            os.close(fd)

    def unfill(self, org: str) -> None:
        (self.spec(org).data_dir / _BALLAST).unlink(missing_ok=True)

    def skew(self, org: str, seconds: float | None) -> None:
        """Restart `org`'s node with its clock `seconds` off (None: the true time again)."""
        self.kill_node(org)
        if seconds is None:
            self.skews.pop(org, None)
        else:
            self.skews[org] = seconds
        self.start_node(org)

    def link(self, org: str, peer: str) -> LinkProxy:
        """The proxy on `org`'s calls to `peer` (an organisation or `etcd-<i>`)."""
        key = (org, peer)
        if key not in self.links:
            if peer.startswith("etcd-"):
                if self.etcd is None:
                    raise ConfigError("this network has no etcd members")
                url = self.etcd.endpoints[int(peer.removeprefix("etcd-"))]
            else:
                url = self.spec(peer).url
            self.links[key] = LinkProxy(int(url.rsplit(":", 1)[1])).start()
        return self.links[key]

    def node_command(self, node: NodeSpec) -> list[str]:
        targets = {p.url: p.org for p in self.nodes if p.org != node.org}
        if self.etcd is not None:
            targets |= {url: f"etcd-{i}" for i, url in enumerate(self.etcd.endpoints)}
        out = []
        for arg in super().node_command(node):
            for url, peer in targets.items():
                # The proxy relays bytes: TLS (etcd's mutual TLS, HTTPS nodes) passes
                # through it, so the caller keeps the target's scheme.
                scheme = url.split("://", 1)[0]
                proxied = self.link(node.org, peer).url.split("://", 1)[1]
                arg = arg.replace(url, f"{scheme}://{proxied}")
            out.append(arg)
        skew = self.skews.get(node.org)
        if skew is not None and "sharechain.cli.node_cmd" in out:
            at = out.index("sharechain.cli.node_cmd")
            out[at : at + 1] = ["sharechain.faults.skewed_node", str(skew)]
        return out

    def pid(self, org: str) -> int:
        """The process id of a node or of an etcd member (`etcd-<i>`)."""
        if org.startswith("etcd-") and self.etcd is not None:
            # Read-only look at the member processes, as bench/network.py does.
            proc = self.etcd._procs[int(org.removeprefix("etcd-"))]
        else:
            proc = self._procs.get(org)  # the launcher's own process table (a subclass's)
        if proc is None or proc.poll() is not None:
            raise ConfigError(f"{org} is not running")
        return proc.pid

    def kill(self, org: str) -> None:
        """SIGKILL a node or an etcd member."""
        if org.startswith("etcd-") and self.etcd is not None:
            self.etcd.kill_member(int(org.removeprefix("etcd-")))
        else:
            self.kill_node(org)

    def restart(self, org: str) -> None:
        if org.startswith("etcd-") and self.etcd is not None:
            self.etcd.start_member(int(org.removeprefix("etcd-")))
        else:
            self.start_node(org)

    def close_links(self) -> None:
        for proxy in self.links.values():
            proxy.close()
