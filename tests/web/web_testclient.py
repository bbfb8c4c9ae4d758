"""Starlette's TestClient, imported without its deprecation warning.

Starlette 1.x warns that it would rather drive `httpx2`; the client works with
the `httpx` the project depends on, and pytest turns warnings into errors.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

__all__ = ["TestClient"]
