"""The bodies of a node's checkpoint routes (`sharechain.api.checkpoint_routes`).

A checkpoint travels as its C2SP signed-note text (`docs/proofs.md` section
2), the form every verifier reads; the other fields repeat what the note says
for readers that do not parse notes. Hashes are lowercase hex.
"""

from __future__ import annotations

from pydantic import Field

from sharechain.api.records import Hex, Model

__all__ = ["CheckpointReply", "ConsistencyReply", "CosignReply", "CosignRequest"]

_NOTE = Field(max_length=16_384, description="A C2SP signed note (checkpoint text, signatures).")


class CheckpointReply(Model):
    """The node's latest quorum checkpoint of its chain."""

    note: str = Field(description="The checkpoint as a signed note, cosigned by a quorum.")
    origin: str = Field(description="`sharechain/<genesis hash hex>`.")
    size: int = Field(ge=1, description="Blocks covered: heights 0 .. size - 1.")
    root: Hex = Field(description="RFC 9162 root of the block hashes.")
    signers: list[str] = Field(description="Key names of the cosigners.")
    quorum: int = Field(ge=1, description="Cosignatures the members' governance requires.")
    genesis: str = Field(description="The founders' signed note over the genesis hash.")


class CosignRequest(Model):
    """A peer asks this node to cosign a checkpoint of the chain."""

    checkpoint: str = Field(max_length=4096, description="The checkpoint text (unsigned).")


class CosignReply(Model):
    """This node's cosignature: the checkpoint signed by its organisation alone."""

    note: str = _NOTE


class ConsistencyReply(Model):
    """An RFC 9162 consistency proof between two sizes of the history tree."""

    old_size: int = Field(ge=1)
    new_size: int = Field(ge=1)
    old_root: Hex
    new_root: Hex
    proof: list[Hex] = Field(description="The proof's hashes, in RFC 9162 order.")
