"""The exception tree of sharechain.

Every error a user can meet derives from one root and says what to do::

    SharechainError                 catch-all for anything sharechain raises
    ├── ConfigError                 bad data directory, key file, genesis or settings
    ├── EncodingError               bytes that are not canonical CBOR of the expected shape
    ├── InvalidSignatureError       a signature did not verify (forged, wrong key, tampered)
    ├── DecryptionError             ciphertext could not be opened; deliberately opaque
    ├── IntegrityError              stored or received data fails its digest or Merkle check
    ├── InsufficientSharesError     fewer key shares than the threshold: collect more
    ├── ChainError                  the ledger is broken: bad link, root, signature or replay
    ├── TransactionRejectedError    a submitted transaction was recorded as invalid
    ├── NotFoundError               an id (transaction, dataset, grant, block) does not exist
    ├── AccessDeniedError           the chain does not allow this organisation to do this
    ├── AuthenticationError         an API request's signature is missing, expired or forged
    ├── OrderingError               the ordering service could not append a block
    ├── QuotaError                  a caller passed one of its rate limits: retry after a while
    └── TooLargeError               a request body or a caller's storage is over its limit

Transaction rejections inside blocks are validation *codes*, not exceptions;
`TransactionRejectedError` surfaces such a code to the sender who asked.
"""

from __future__ import annotations


class SharechainError(Exception):
    """Root of every error sharechain raises on purpose."""


class ConfigError(SharechainError):
    """A data directory, key file, genesis file or setting is missing or wrong."""


class EncodingError(SharechainError):
    """Bytes are not the canonical encoding of the expected record."""


class InvalidSignatureError(SharechainError):
    """A signature does not verify under the given public key."""


class DecryptionError(SharechainError):
    """Ciphertext could not be decrypted; why is deliberately not said."""

    def __init__(self, message: str = "decryption failed: wrong key or corrupted data") -> None:
        super().__init__(message)


class IntegrityError(SharechainError):
    """Data does not match the digest or Merkle root it should have."""


class InsufficientSharesError(SharechainError):
    """Fewer distinct key shares than the threshold were given; ask more share holders."""


class ChainError(SharechainError):
    """The ledger fails verification; carries the first bad height when known."""

    def __init__(self, message: str, height: int | None = None) -> None:
        super().__init__(message)
        self.height = height


class ClockSkewError(ChainError):
    """A block's time is too far from this node's clock: a refusal another node, with
    another clock, may not share (near the bound a node waits for its peers first:
    `node.arrivals`)."""


class TransactionRejectedError(SharechainError):
    """A transaction was committed with a validation code other than valid."""

    def __init__(self, code: str, reason: str, tx_id: bytes | None = None) -> None:
        super().__init__(f"transaction rejected ({code}): {reason}")
        self.code = code
        self.reason = reason
        self.tx_id = tx_id


class NotFoundError(SharechainError):
    """The thing asked for does not exist on this node."""


class AccessDeniedError(SharechainError):
    """The chain's rules do not allow the caller to do this."""


class AuthenticationError(SharechainError):
    """An API request is not signed by a current consortium key, or its signature is stale."""


class OrderingError(SharechainError):
    """The ordering service could not order or append a block."""


class QuotaError(SharechainError):
    """A caller passed one of its limits (429); `retry_after` says when to try again."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TooLargeError(SharechainError):
    """A request body or a caller's storage is over its limit (413); send less."""


class DiskFullError(OrderingError):
    """The node's disk is full: it takes no work until space returns (503 `disk_full`).

    Retry later; the node's operator must free space on the data directory's disk.
    """
