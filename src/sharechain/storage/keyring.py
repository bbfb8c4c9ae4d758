"""A node's own keys, and how it picks up a rotation without a restart.

`org rotate-key` commits the new key on the chain, then rewrites the key
file. The node re-reads the file when the file changed or when its key on
the chain is no longer the one it signs with, and takes the file's keys only
once the chain names them: until then it keeps signing with the key the
chain still accepts. `generation` counts replacements, so whoever holds a
client signed with the old key (`PeerClient`) knows to rebuild it.
"""

from __future__ import annotations

import logging
import threading

from sharechain.crypto.keyfile import OrgKeys
from sharechain.errors import ConfigError
from sharechain.ledger.identities import Organisation
from sharechain.storage.datadir import DataDir
from sharechain.storage.vault import rewrap

__all__ = ["KeyRing"]

log = logging.getLogger("sharechain.node")


class KeyRing:
    """One organisation's keys as held by its node. Thread-safe."""

    def __init__(self, datadir: DataDir, org: str) -> None:
        self._datadir = datadir
        self.org = org
        self.keys: OrgKeys = datadir.keys(org)
        """The keys the node signs and decrypts with now."""
        self.generation = 0
        """How many times `keys` were replaced."""
        self._stamp = self._file_stamp()
        self._lock = threading.Lock()

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = self._datadir.key_path(self.org).stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def refresh(self, me: Organisation | None) -> bool:
        """Take the key file's keys if the chain (`me`, the organisation's record) names
        them and they are not the ones held; True if the keys were replaced."""
        with self._lock:
            stamp = self._file_stamp()
            current = me is not None and me.sign_key == self.keys.signing.public_key
            if current and stamp == self._stamp:
                return False
            self._stamp = stamp
            try:
                keys = self._datadir.keys(self.org)
            except ConfigError as exc:
                log.warning("cannot re-read %s's key file: %s", self.org, exc)
                return False
            if me is None or keys.signing.public_key != me.sign_key or current:
                return False
            self._take(keys)
        log.info("%s now signs with its rotated key %s", self.org, keys.sign_key_id.hex()[:16])
        return True

    def _take(self, keys: OrgKeys) -> None:
        """Sign and decrypt with `keys` from now on (call with the lock held)."""
        rewrap(self._datadir.path, self.keys, keys)  # the vault follows the new key
        self.keys = keys
        self.generation += 1

    def adopt_file_keys(self) -> bool:
        """Take the key file's keys although this node's chain does not name them yet;
        True if the keys were replaced.

        Only for a refusal by the node's orderer, whose chain already names the rotated
        key: a follower that had not yet fetched the block of its own organisation's
        rotation could otherwise never fetch it (every request signed with the old key
        is refused). `org rotate-key` writes the key file once the rotation committed.
        """
        with self._lock:
            try:
                keys = self._datadir.keys(self.org)
            except ConfigError as exc:
                log.warning("cannot re-read %s's key file: %s", self.org, exc)
                return False
            if keys.signing.public_key == self.keys.signing.public_key:
                return False
            self._stamp = self._file_stamp()
            self._take(keys)
        log.info(
            "%s signs with its key file's key %s, which its orderer's chain names already",
            self.org,
            keys.sign_key_id.hex()[:16],
        )
        return True
