"""The API's error bodies: `{"error": kind, "detail": text}`, and the statuses they come with.

Every refusal is JSON with a short machine-readable `error` kind and a
`detail` that says what was wrong and what to do; a few carry more fields
(a validation error lists the fields, a range refusal the blob's size, a
key release refused by the chain its validation code and transaction).
`error_responses` documents them in a route's `responses=`, so every 4xx of
the OpenAPI document names its body.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from sharechain.api.records import Hex, Model

__all__ = [
    "OPEN_ERRORS",
    "SIGNED_ERRORS",
    "ErrorBody",
    "FieldError",
    "InvalidBody",
    "NoKey",
    "OffsetConflict",
    "RangeRefused",
    "ReleaseRefused",
    "error_responses",
]


class ErrorBody(Model):
    """Why a request was refused."""

    error: str
    """The kind: `bad_request`, `unauthenticated`, `forbidden`, `not_found`, `rejected`,
    `too_large`, `unavailable`, `quarantined`, `http`, `conflict`, `digest_mismatch`..."""
    detail: str
    """What was wrong and what to do about it."""


class FieldError(Model):
    """One part of a request that does not match the API."""

    loc: list[str]
    """Where: `body`, `query` or `path`, then the field."""
    msg: str


class InvalidBody(ErrorBody):
    """A request whose parameters or body do not match the API (422)."""

    errors: list[FieldError]


class RangeRefused(ErrorBody):
    """A `Range` outside the blob (416)."""

    size: int
    """The blob's size in bytes."""


class OffsetConflict(ErrorBody):
    """A chunk sent at the wrong offset (409): resume from `received`."""

    received: int


# The two key-release refusals keep the field order they always had on the
# wire (the chain's code before the detail), hence no ErrorBody base here.


class ReleaseRefused(Model):
    """The chain refused a key release (403); the refusal is recorded in a block."""

    error: str
    """Always `forbidden`."""
    code: str
    """The validation code of the `grant.key-release` transaction."""
    reason: str
    detail: str
    tx_id: Hex
    height: int
    index: int


class NoKey(Model):
    """The custodian no longer holds the key (destroyed by a purge); nothing was released."""

    error: str
    """Always `no_key`."""
    code: str
    """Always `no_key`."""
    detail: str
    tx_id: Hex
    height: int
    index: int


_MEANING: dict[int, str] = {
    400: "malformed input (the detail says which part and why)",
    401: "unauthenticated: a missing, expired, replayed or forged signature",
    403: "not allowed for this organisation (the detail names the rule)",
    404: "no such record on this node",
    409: "conflicts with the chain or with what the node holds",
    413: "the request body is too large",
    415: "a body in a media type the endpoint does not take",
    416: "the range is outside the blob",
    422: "the parameters or body do not match the API",
    429: "the caller passed one of its limits (rate, quota); `Retry-After` says when to retry",
    502: "a peer answered with data that failed its checks",
    503: "the node or its ordering service cannot serve now (or the node is quarantined)",
}


def error_responses(
    *statuses: int, **bodies: type[BaseModel] | str
) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries documenting `statuses` with their JSON error bodies.

    `bodies` maps a status (as `s409=...`) to a more specific body model, or to
    a description of what that status means for the route.
    """
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        special = bodies.get(f"s{status}")
        model: type[BaseModel] = InvalidBody if status == 422 else ErrorBody
        description = _MEANING[status]
        if isinstance(special, str):
            description = special
        elif special is not None:
            model, description = special, (special.__doc__ or description).strip()
        out[status] = {"model": model, "description": description}
    return out


SIGNED_ERRORS = error_responses(400, 401, 403, 404, 413, 422, 429, 503)
"""What any signed route may answer besides its success."""
OPEN_ERRORS = error_responses(413, 503, s503="the node is quarantined (the detail says why)")
"""What the unsigned routes (health, readiness, metrics) may answer besides their success."""
