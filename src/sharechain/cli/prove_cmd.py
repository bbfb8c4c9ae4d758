"""`sharechain prove range | verify range`: show a number is in range without showing the number.

`prove range VALUE --bits 32` commits to VALUE with a Pedersen commitment and
proves, with a bit-decomposition range proof, that it lies in ``[0, 2^bits)``.
The commitment and proof are public; the *opening* (the value and its blinding
factor) is what reveals the value later, so it is written only to the file the
user names with ``--opening`` (created with mode 0600, never overwritten).
`verify range` checks a commitment and proof for the same bits and context and
exits with status 1 and the reason when the proof is refused.

The context (``--context``) binds the proof to its purpose, e.g. a session and
a participant: a proof made for one context is refused in every other.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from sharechain.cli.common import JsonOpt, command_group, console, emit_json, fail
from sharechain.crypto import rangeproof
from sharechain.crypto import ristretto as r255

__all__ = ["register", "save_opening"]

BitsOpt = Annotated[
    int, typer.Option("--bits", help=f"The range is [0, 2^bits); 1 to {rangeproof.MAX_BITS}.")
]
ContextOpt = Annotated[
    str,
    typer.Option("--context", help="What the proof is for (e.g. session and participant)."),
]


def _hex(text: str, what: str) -> bytes:
    """Hex given on the command line, or ``@FILE`` holding hex."""
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            fail(f"cannot read {what} from {text[1:]}: {exc.strerror or exc}")
    try:
        return bytes.fromhex(text.strip())
    except ValueError:
        fail(f"the {what} must be hexadecimal (or @FILE holding hexadecimal)")


def save_opening(path: Path, document: dict[str, object]) -> None:
    """Write the opening to a new file readable by its owner only, all or nothing."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(document, f, indent=2, sort_keys=True)
            f.write("\n")
        # link() refuses an existing target, so an earlier opening is never lost.
        os.link(temporary, path)
    except FileExistsError:
        fail(f"{path} already exists: choose another file for the opening")
    except OSError as exc:
        fail(f"cannot write the opening to {path}: {exc.strerror or exc}")
    finally:
        temporary.unlink(missing_ok=True)


def prove_range(
    value: Annotated[str, typer.Argument(help="The secret non-negative integer.")],
    bits: BitsOpt = 32,
    context: ContextOpt = "",
    opening: Annotated[
        Path | None,
        typer.Option(
            "--opening",
            help="Save the opening (value and blinding) to this new file, mode 0600.",
            show_default=False,
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Commit to VALUE and prove it lies in [0, 2^bits)."""
    if not 1 <= bits <= rangeproof.MAX_BITS:
        fail(f"--bits must be 1 to {rangeproof.MAX_BITS}, not {bits}")
    try:
        number = int(value.strip(), 10)
    except ValueError:
        fail(f"{value!r} is not an integer")
    if not 0 <= number < 1 << bits:
        fail(f"the value must be in [0, 2^{bits}); widen --bits or check the value")
    commitment, secret, proof = rangeproof.prove_value(number, bits, context.encode())
    if opening is not None:
        save_opening(
            opening,
            {
                "value": number,
                "blinding": r255.encode_scalar(secret.blinding).hex(),
                "commitment": commitment.hex(),
                "bits": bits,
                "context": context,
            },
        )
    if json_out:
        emit_json(
            {
                "commitment": commitment.hex(),
                "proof": proof.hex(),
                "bits": bits,
                "context": context,
                "opening": str(opening) if opening else None,
            }
        )
        return
    kept = f"opening saved to {opening}" if opening else "opening not kept (no --opening)"
    console.print(
        f"commitment {commitment.hex()}\nproof ({len(proof)} bytes) {proof.hex()}\n"
        f"proves a value in [0, 2^{bits}) for context {context!r}; {kept}",
        highlight=False,
        soft_wrap=True,
    )


def verify_range(
    commitment: Annotated[str, typer.Option("--commitment", help="The commitment (hex).")],
    proof: Annotated[str, typer.Option("--proof", help="The proof (hex, or @FILE).")],
    bits: BitsOpt = 32,
    context: ContextOpt = "",
    json_out: JsonOpt = False,
) -> None:
    """Check that COMMITMENT holds a value in [0, 2^bits); exit 1 with the reason if not."""
    if not 1 <= bits <= rangeproof.MAX_BITS:
        fail(f"--bits must be 1 to {rangeproof.MAX_BITS}, not {bits}")
    point, data = _hex(commitment, "commitment"), _hex(proof, "proof")
    try:
        rangeproof.verify(point, data, context.encode(), bits)
    except rangeproof.InvalidProofError as exc:
        if json_out:
            emit_json({"valid": False, "reason": str(exc)})
            raise typer.Exit(1) from None
        fail(str(exc), code=1)
    if json_out:
        emit_json({"valid": True, "bits": bits, "context": context})
        return
    console.print(
        f"valid: the commitment holds a value in [0, 2^{bits}) for context {context!r}",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    prove = command_group("prove", "Zero-knowledge proofs about committed values.")
    prove.command("range")(prove_range)
    app.add_typer(prove)
    verify = command_group("verify", "Check zero-knowledge proofs.")
    verify.command("range")(verify_range)
    app.add_typer(verify)
