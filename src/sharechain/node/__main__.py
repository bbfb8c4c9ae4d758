"""`python -m sharechain.node ...`: the `sharechain node` commands (used by the launcher)."""

from sharechain.cli.node_cmd import node_app

node_app(prog_name="sharechain node")
