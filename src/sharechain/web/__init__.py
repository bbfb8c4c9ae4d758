"""The browser console each node serves under `/ui` (see docs/console.md).

Server-rendered pages (Jinja2, autoescaped), htmx and Pico CSS vendored under
`static/`, SVG drawn on the server; operator accounts with roles, sessions,
CSRF tokens. It reads through `sharechain.contracts.queries` over the node's
store and acts by transactions the node signs with its organisation's key.
"""

from sharechain.web.console import Console, mount

__all__ = ["Console", "mount"]
