"""Private set intersection figures: ours against OpenMined's PSI, same sets, same machine.

- ``psi_<n>_*``: a private set intersection of two sets of ``n`` e-mail-like
  strings (half of them shared), 10k x 10k and 100k x 100k. ``wall_s`` is the
  whole protocol on this machine (client blinds, holder evaluates and tags its
  set, client finalises), messages passing through their byte encoding;
  ``bytes`` is everything exchanged. ``openmined_*`` is OpenMined's
  ``openmined-psi`` (C++, ECDH over P-256) on the same sets, one run, with its
  exact ``RAW`` setup message and, for 10k, its compact ``GCS`` filter
  (false-positive rate 1e-9). Our OPRF evaluations run on a thread pool of one
  thread per core (libsodium releases the GIL).

Secure aggregation and the range proofs are measured by `sharechain.bench.aggregation`.

Run ``python -m sharechain.bench.psi`` to print the figures as JSON.
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

from sharechain.crypto import oprf
from sharechain.privacy import psi

__all__ = ["openmined_psi", "our_psi", "run", "sets"]

PSI_SIZES = (10_000, 100_000)


def sets(n: int, seed: int = 1) -> tuple[list[str], list[str]]:
    """Two sets of ``n`` distinct addresses sharing ``n // 2`` of them."""
    rng = random.Random(seed)
    shared = [f"customer-{rng.getrandbits(48):012x}@bank.example" for _ in range(n // 2)]
    client = shared + [f"client-{i}@bank-a.example" for i in range(n - len(shared))]
    holder = shared + [f"holder-{i}@bank-b.example" for i in range(n - len(shared))]
    rng.shuffle(client)
    rng.shuffle(holder)
    return client, holder


def our_psi(client: list[str], holder: list[str]) -> tuple[float, int, int]:
    """``(wall seconds, bytes exchanged, intersection size)`` of our protocol."""
    start = time.perf_counter()
    key = oprf.generate_key()
    state, request = psi.client_request(client, case="exact")
    sent = request.encode()
    response = psi.holder_respond(key, psi.PsiRequest.decode(sent), holder, case="exact")
    answer = response.encode()
    result = psi.client_finish(state, psi.PsiResponse.decode(answer))
    return time.perf_counter() - start, len(sent) + len(answer), len(result.intersection)


def openmined_psi(client: list[str], holder: list[str], compact: bool) -> tuple[float, int, int]:
    """The same figures for ``openmined-psi``; raises ImportError when it is not installed."""
    import private_set_intersection.python as om

    structure = om.DataStructure.GCS if compact else om.DataStructure.RAW
    start = time.perf_counter()
    om_client = om.client.CreateWithNewKey(True)
    om_server = om.server.CreateWithNewKey(True)
    setup = om_server.CreateSetupMessage(1e-9, len(client), holder, structure)
    request = om_client.CreateRequest(client)
    response = om_server.ProcessRequest(request)
    found = om_client.GetIntersection(setup, response)
    wall = time.perf_counter() - start
    size = sum(len(m.SerializeToString()) for m in (setup, request, response))
    return wall, size, len(found)


def _psi_figures(n: int) -> dict[str, Any]:
    client, holder = sets(n)
    wall, size, found = our_psi(client, holder)
    if found != n // 2:
        raise RuntimeError(f"our PSI found {found} of {n // 2} shared elements")
    out: dict[str, Any] = {f"psi_{n}_wall_s": round(wall, 2), f"psi_{n}_bytes": size}
    runs = [("raw", False)] + ([("gcs", True)] if n <= 10_000 else [])
    for name, compact in runs:
        try:
            om_wall, om_size, om_found = openmined_psi(client, holder, compact)
        except ImportError:
            out["openmined_psi"] = "not installed (pip install openmined-psi)"
            break
        out[f"openmined_psi_{n}_{name}_wall_s"] = round(om_wall, 2)
        out[f"openmined_psi_{n}_{name}_bytes"] = om_size
        out[f"openmined_psi_{n}_{name}_found"] = om_found
    return out


def run() -> dict[str, Any]:
    """Every figure above (about two minutes on two cores)."""
    out: dict[str, Any] = {"psi_threads": oprf.default_workers()}
    for n in PSI_SIZES:
        out.update(_psi_figures(n))
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
