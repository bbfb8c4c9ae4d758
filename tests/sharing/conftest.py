"""The `side` fixture: every data-plane test runs embedded and over four nodes."""

from __future__ import annotations

from plane_sides import remote_side, side

__all__ = ["remote_side", "side"]
