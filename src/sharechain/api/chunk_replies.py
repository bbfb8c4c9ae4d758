"""The API's answer to one chunk of a blob upload: its HTTP status and JSON body.

A node receives a blob in chunks (`PUT /v1/blobs/{digest}` and
`PUT /v1/uploads/{id}`); `sharechain.storage.uploads` says what each chunk
came to, and this module says how the wire carries it: 200 with
`ChunkReceived` or `BlobStored`, 409 with the offset to send from, 422 when
the bytes do not hash to the digest, 503 when writing them failed.
"""

from __future__ import annotations

from pydantic import BaseModel

from sharechain.api.data_plane import BlobStored, ChunkReceived
from sharechain.api.problems import ErrorBody, OffsetConflict
from sharechain.storage.uploads import (
    DigestMismatch,
    Outcome,
    Received,
    Stored,
    WriteFailed,
    WrongOffset,
)

__all__ = ["NO_DIGEST", "chunk_reply"]

NO_DIGEST = ErrorBody(error="bad_request", detail="the final chunk names the digest")
"""The 400 body of a streamed upload's final chunk that names no digest."""


def chunk_reply(outcome: Outcome) -> tuple[int, BaseModel]:
    """(HTTP status, body) of what one chunk came to."""
    match outcome:
        case Received(name, received):
            return 200, ChunkReceived(digest=name, stored=False, received=received)
        case Stored(digest, size):
            return 200, BlobStored(digest=digest.hex(), stored=True, size=size)
        case WrongOffset(name, received):
            detail = f"this node holds {received} bytes of blob {name}; send from there"
            return 409, OffsetConflict(error="conflict", detail=detail, received=received)
        case DigestMismatch(name):
            detail = (
                f"the bytes received do not hash to {name}; nothing was kept, "
                "upload again from offset 0"
            )
            return 422, ErrorBody(error="digest_mismatch", detail=detail)
        case WriteFailed(name, error):
            detail = f"writing blob {name} failed ({error}); upload again from offset 0"
            return 503, ErrorBody(error="unavailable", detail=detail)
