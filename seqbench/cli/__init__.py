"""The command-line programs: `seqbench-train` (cli/train.py) and `seqbench` (cli/report.py)."""

from __future__ import annotations

import sys
from typing import NoReturn


def fail(program: str, message: str) -> NoReturn:
    """Stop on bad input: one line `<program>: error: <message>` on stderr and exit status 2 (as
    argparse's usage errors); the raised SystemExit carries the line as its message."""
    line = f"{program}: error: {message}"
    print(line, file=sys.stderr)
    error = SystemExit(line)
    error.code = 2
    raise error
