"""The `middock` command: the same words locally and as `ssh deploy@host WORD …`.

Each module here holds one group of commands, registered with `@command` and `@argument`
(commands.py); `main` parses the words and runs the command, turning a MiddockError into one
line on stderr and a non-zero exit.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ..errors import MiddockError, one_line, os_error_line
from ..server import privileges
from . import apps, cron, edge, help, maintenance, networks, notify, previews, releases, running, server, swarm  # noqa: F401 (each registers its commands)
from .commands import COMMANDS, parser, text_words


def main(argv: Sequence[str] | None = None) -> int:
    sys.stdout.reconfigure(line_buffering=True)  # our lines before a deploy's streamed output
    try:
        args = parser().parse_args(text_words(sys.argv[1:] if argv is None else argv))
        command = COMMANDS[args.command]
        if command.privileges == "user":
            privileges.become(privileges.target(args.user))
        return command.run(args)
    except MiddockError as error:
        sys.stderr.write(f" !     {one_line(str(error))}\n")
        return 1
    except BrokenPipeError:
        return 1
    except OSError as error:
        sys.stderr.write(f" !     {one_line(os_error_line(error))}; nothing was changed\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
