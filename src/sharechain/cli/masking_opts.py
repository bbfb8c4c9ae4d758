"""`--masking P`: naming a registered masking profile on the command line.

`request create --masking P` asks for a masked release (the contract records
the profile on the request and the grant releases only the masked version);
`dataset publish|register|version|derive --masking P` puts the profile in the
dataset's policy for its classification, as a policy file's `masking:` does.
P is a profile's name or digest (a unique prefix will do on an embedded
chain; on the nodes give the full digest).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer

from sharechain.cli.common import fail
from sharechain.contracts import queries
from sharechain.contracts.governance import governance_from_mapping
from sharechain.contracts.policies import policy_to_value
from sharechain.errors import NotFoundError
from sharechain.ledger.genesis import GOVERNANCE_KEY
from sharechain.ledger.state import StateReader
from sharechain.sharing.plane import Plane

__all__ = ["MaskingOpt", "default_policy", "masked_policy", "resolve_profile"]

MaskingOpt = Annotated[
    str | None,
    typer.Option(
        "--masking",
        help="A registered masking profile (its name or digest): the grantee gets only the "
        "masked version made under it.",
    ),
]
_HEX = frozenset("0123456789abcdef")


def resolve_profile(plane: Plane, text: str) -> bytes:
    """The digest of the registered profile `text` names: a digest, its prefix, or a name.

    A full digest is taken as it is (the contract checks it is registered);
    names and prefixes are looked up on an embedded chain. On the nodes give
    the digest (`profile register` prints it).
    """
    wanted = text.strip().lower()
    if len(wanted) == 64 and set(wanted) <= _HEX:
        return bytes.fromhex(wanted)
    if plane.embedded is None:
        fail(f"--masking {text!r}: on the nodes give the profile's full digest (64 hex digits)")
    found = queries.profiles(plane.embedded.store)
    named = [p for p in found if p.name == text]
    if not named and set(wanted) <= _HEX and wanted:
        named = [p for p in found if p.digest.hex().startswith(wanted)]
    if len(named) != 1:
        what = "no" if not named else f"{len(named)}"
        fail(
            f"--masking {text!r}: {what} registered masking profile(s) have that name or digest "
            "prefix; `sharechain profile list` shows them"
        )
    return named[0].digest


def masked_policy(
    plane: Plane, policy: Any, classification: str, masking: str, *, inherited: Any = None
) -> dict[str, Any]:
    """The policy map a dataset gets with `--masking`: `policy` requiring the profile.

    `policy` is the `--policy` file's map, or None: then the dataset's current
    policy (`inherited`, for a new version) or else the consortium's default,
    so `--masking` changes nothing but the masking for `classification`.
    """
    digest = resolve_profile(plane, masking)
    base = policy if policy is not None else inherited
    if base is None:
        base = default_policy(plane)
    value = dict(base)
    value["masking"] = {**dict(value.get("masking") or {}), classification: digest.hex()}
    return value


def default_policy(plane: Plane) -> Mapping[str, Any]:
    """The consortium's default policy map: a dataset registered without a policy gets it.

    On an embedded chain, the genesis governance setting as written (an empty
    map when unset: the built-in default); on the nodes, the canonical map of
    what the node answers (`GET /v1/policies/default`). The contract reads
    either into the same policy.
    """
    if plane.embedded is not None:
        settings = StateReader(plane.embedded.store).get(GOVERNANCE_KEY)
        return governance_from_mapping(settings or {}).default_policy or {}
    if plane.client is None:  # a Plane is embedded or has a node client
        fail("--masking without --policy: no embedded chain and no node to read the default from")
    try:
        return policy_to_value(plane.client.default_policy())
    except NotFoundError:
        fail(
            f"--masking without --policy: the node at {plane.client.base_url} does not serve "
            "the consortium's default policy (GET /v1/policies/default; an older node): "
            "give the policy file too (--policy FILE)"
        )
