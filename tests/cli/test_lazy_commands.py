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
import json, os, sys
from sharechain.cli.main import COMMANDS, _COMMANDS

def tree(cmd, path):
    out = {path: sorted(o for p in cmd.params for o in getattr(p, "opts", [p.name]))}
    for name, sub in getattr(cmd, "commands", {}).items():
        out.update(tree(sub, f"{path} {name}"))
    return out

def first_paragraph(cmd):
    text = cmd.short_help or cmd.help or ""
    return " ".join(text.split("\\n\\n")[0].split())

def load(names):
    found = {}
    for name in names:
        cmd = _COMMANDS[name]
        found[name] = {"help": first_paragraph(cmd), "tree": tree(cmd, name)}
    loaded = sorted(
        m for m in sys.modules if m.startswith("sharechain.cli.") and m.endswith("_cmd")
    )
    return {"found": found, "loaded": loaded}

# Each list of commands is loaded in a child forked from this process, which has
# loaded the command line's root and no command: what `sharechain NAME` starts from.
results = []
for names in json.loads(sys.argv[1]):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read)
            with os.fdopen(write, "w") as out:
                json.dump(load(names), out)
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as answer:
        text = answer.read()
    if os.waitpid(pid, 0)[1] != 0:
        sys.exit(f"loading {names} failed")
    results.append(json.loads(text))
print(json.dumps(results))
"""


def _load(*loads: tuple[str, ...]) -> list[dict[str, Any]]:
    """What each tuple of commands registers and imports, loaded in `COMMANDS` order
    with only the command line's root loaded before (each in a process of its own)."""
    out = subprocess.run(
        [sys.executable, "-c", _TREE, json.dumps(loads)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: list[dict[str, Any]] = json.loads(out)
    return result


def _groups() -> dict[tuple[str, ...], list[str]]:
    """The commands by the modules `COMMANDS` says they need."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for name, (_, modules) in COMMANDS.items():
        groups.setdefault(modules, []).append(name)
    return groups


@pytest.fixture(scope="module")
def loads() -> list[dict[str, Any]]:
    """Every command in `COMMANDS` order, every one in the other order, then each group
    of commands alone."""
    return _load(
        tuple(COMMANDS), tuple(reversed(COMMANDS)), *(tuple(n) for n in _groups().values())
    )


@pytest.fixture(scope="module")
def everything(loads: list[dict[str, Any]]) -> dict[str, Any]:
    """Every command, loaded in `COMMANDS` order in one fresh process."""
    found: dict[str, Any] = loads[0]["found"]
    return found


def test_each_command_alone_is_what_it_is_with_every_module_loaded(
    loads: list[dict[str, Any]], everything: dict[str, Any]
) -> None:
    assert set(everything) == set(COMMANDS)
    # Loaded in the other order, a module that adds to another's group comes first.
    assert loads[1]["found"] == everything
    for (modules, names), alone in zip(_groups().items(), loads[2:], strict=True):
        loaded = {m.rsplit(".", 1)[1] for m in alone["loaded"]}
        assert set(modules) <= loaded, (names, loaded)
        for name in names:
            assert alone["found"][name] == everything[name], name


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
