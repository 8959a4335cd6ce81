"""The command index (cli/commands.py's MODULES): each command runs with its own module imported
only, so the index must name the module that registers it, for every command."""

from __future__ import annotations

import subprocess
import sys

from middock_receiver.cli import load_all
from middock_receiver.cli.commands import MODULES, NAMES


def test_the_index_names_each_commands_module_and_every_command():
    registered = {name: command.run.__module__.rsplit(".", 1)[1] for name, command in load_all().items()}
    assert registered == {name: module for module, names in MODULES.items() for name in names}
    assert set(registered) == NAMES


def test_a_command_imports_its_own_module_only():
    code = "import sys; from middock_receiver.cli import main; main(['version']); print(sorted(sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "'middock_receiver.cli.help'" in loaded and "'middock_receiver.cli.releases'" not in loaded
