"""Bodies of the computation routes: a session's record and its parties' mailboxes.

The routes are in `sharechain.sharing.mailbox_routes`. A message is opaque bytes (hex on
the wire) of one protocol step (`sharechain.privacy.psi`,
`sharechain.privacy.aggregation`); the node stores it for its own organisation
and checks only who may post and read it, and how much.
"""

from __future__ import annotations

from pydantic import Field

from sharechain.api.records import Model

__all__ = [
    "CommitView",
    "ComputationInput",
    "ComputationView",
    "Expiry",
    "MailBody",
    "MailPosted",
    "MailRead",
    "Message",
    "Rejection",
]


class MailBody(Model):
    """One message for this node's organisation."""

    body: str = Field(pattern="^([0-9a-f]{2})*$", max_length=2 * 16 * 1024 * 1024)
    """The message bytes in hex (at most 16 MiB of bytes)."""


class MailPosted(Model):
    """The message is kept for its recipient."""

    session: str
    to: str
    """The recipient: this node's organisation."""
    sender: str
    kind: str
    size: int
    """Bytes of the message."""


class Message(Model):
    """One message in a mailbox."""

    sender: str
    body: str
    """The message bytes in hex."""


class MailRead(Model):
    """The messages of one kind this node's organisation received in a session."""

    session: str
    kind: str
    messages: list[Message]
    """One per sender, in sender order."""


class ComputationInput(Model):
    """What the holder says it offers (PSI)."""

    dataset: str
    column: str


class CommitView(Model):
    """What one party committed."""

    digest: str
    """SHA-256 (hex) of its input message (PSI) or of its commitments (aggregation)."""
    size: int
    """Its set size, or the number of values."""


class Rejection(Model):
    """How a session was rejected (a timeout says what never came)."""

    by: str
    reason: str


class Expiry(Model):
    """How a session expired."""

    by: str
    without_input: list[str]
    """Parties that had not committed an input."""
    height: int


class ComputationView(Model):
    """A computation session as the chain records it (`contracts.computations`)."""

    id: str
    kind: str
    """`psi` or `aggregate`."""
    proposer: str
    parties: list[str]
    client: str
    """The PSI client (it learns the intersection), else empty."""
    purpose: str
    limits: dict[str, int]
    """`max_set_size` (PSI); `length`, `bits`, `max_dropouts` (aggregation)."""
    input: ComputationInput
    approval_required: bool
    approved_by: str
    accepted: list[str]
    status: str
    """`proposed`, `open`, `done`, `rejected` or `expired`."""
    deadline: int
    """Block time (ms) after which the session can only be closed."""
    commits: dict[str, CommitView]
    """Party -> what it committed."""
    result: dict[str, int | str | list[str]] | None
    """`intersection_size`, or `contributors` and `sums_digest` (hex); heights and time."""
    receipts: list[str]
    rejected: Rejection | None = None
    """Who rejected the session and why (status `rejected`)."""
    expired: Expiry | None = None
    """Who closed it after its deadline, and who had not committed (status `expired`)."""
    height: int
    tx_id: str
