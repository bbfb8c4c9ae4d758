"""The command line imports only the command run; `COMMANDS` matches what the modules add.

`sharechain --help` shows each command from `COMMANDS` without importing its
module, and running a command imports only the modules `COMMANDS` names for
it. Both are only right if the table says what the modules really register:
each command's help, and, with only its modules loaded, the same tree of
subcommands and options as with every module loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from typer.testing import CliRunner

from sharechain.cli.main import COMMANDS, app

_TREE = """
import json, sys
from sharechain.cli.main import COMMANDS, _COMMANDS

def tree(cmd, path):
    out = {path: sorted(o for p in cmd.params for o in getattr(p, "opts", [p.name]))}
    for name, sub in getattr(cmd, "commands", {}).items():
        out.update(tree(sub, f"{path} {name}"))
    return out

def first_paragraph(cmd):
    text = cmd.short_help or cmd.help or ""
    return " ".join(text.split("\\n\\n")[0].split())

names = sys.argv[1:] or list(COMMANDS)
found = {}
for name in names:
    cmd = _COMMANDS[name]
    found[name] = {"help": first_paragraph(cmd), "tree": tree(cmd, name)}
loaded = sorted(m for m in sys.modules if m.startswith("sharechain.cli.") and m.endswith("_cmd"))
print(json.dumps({"found": found, "loaded": loaded}))
"""


def _load(*names: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", _TREE, *names], capture_output=True, text=True, check=True
    ).stdout
    result: dict[str, Any] = json.loads(out)
    return result


@pytest.fixture(scope="module")
def everything() -> dict[str, Any]:
    """Every command, loaded in `COMMANDS` order in one fresh process."""
    found: dict[str, Any] = _load()["found"]
    return found


def test_each_command_alone_is_what_it_is_with_every_module_loaded(
    everything: dict[str, Any],
) -> None:
    assert set(everything) == set(COMMANDS)
    # Loaded in the other order, a module that adds to another's group comes first.
    assert _load(*reversed(COMMANDS))["found"] == everything
    groups: dict[tuple[str, ...], list[str]] = {}
    for name, (_, modules) in COMMANDS.items():
        groups.setdefault(modules, []).append(name)
    # One process at a time: the other test worker's nodes keep a core.
    alone = {modules: _load(*names) for modules, names in groups.items()}
    for modules, names in groups.items():
        loaded = {m.rsplit(".", 1)[1] for m in alone[modules]["loaded"]}
        assert set(modules) <= loaded, (names, loaded)
        for name in names:
            assert alone[modules]["found"][name] == everything[name], name


def test_the_help_shown_without_loading_is_each_command_s_own(
    everything: dict[str, Any],
) -> None:
    for name, (help_text, _) in COMMANDS.items():
        assert help_text == everything[name]["help"], name


def test_root_help_lists_every_command_and_imports_none() -> None:
    code = (
        "import sys\n"
        "from sharechain.cli.main import main\n"
        "sys.argv = ['sharechain', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('LOADED', sorted(m for m in sys.modules if m.endswith('_cmd')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=None
    ).stdout
    assert out.rstrip().endswith("LOADED []")
    for name in COMMANDS:
        assert f" {name} " in out, name


def test_a_mistyped_command_is_refused_with_a_suggestion() -> None:
    result = CliRunner().invoke(app, ["nod", "status"])
    assert result.exit_code == 2
    assert "No such command 'nod'" in result.output
    assert "'node'" in result.output


def test_a_command_that_reads_no_rule_does_not_load_the_rule_language(tmp_path: Any) -> None:
    """The CEL package also loads its interactive shell (about 0.15 s): it is imported at
    the first auto-approval rule compiled, not by every command that imports the contracts."""
    code = (
        "import sys\n"
        "from sharechain.cli.main import main\n"
        f"sys.argv = ['sharechain', 'dataset', 'list', '--data-dir', {str(tmp_path)!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('CEL', 'cel' in sys.modules, 'prompt_toolkit' in sys.modules)\n"
        "from sharechain.contracts.policies import compile_rule\n"
        "compile_rule('request.purpose == \"research\"')\n"
        "print('CEL', 'cel' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.splitlines()[-2:] == ["CEL False False", "CEL True"], out
