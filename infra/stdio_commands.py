"""Which executable a stdio tool server's ``command`` names, and whether it is allowed.

The API resolves an admin's command when it is registered and stores the absolute
path, so the worker starts exactly what was checked, whatever the worker's ``PATH``.
A bare name (``mcp-server-time``) is looked up on ``PATH``, then in the directory of
the running interpreter (the virtual environment's ``bin``, where console scripts of
packages installed with Keel live, even when that environment is not activated).
No I/O beyond ``stat``; no MCP imports, so the API can use it cheaply.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence

__all__ = ["resolve_command", "stdio_command_allowed"]


def _search_path() -> str:
    parts = [p for p in os.environ.get("PATH", os.defpath).split(os.pathsep) if p]
    venv_bin = os.path.dirname(sys.executable)
    if venv_bin and venv_bin not in parts:
        parts.append(venv_bin)
    return os.pathsep.join(parts)


def resolve_command(command: str) -> str | None:
    """The absolute path of the executable ``command`` names, or None when there is none.

    A command with a ``/`` is taken as a path (it must be an executable file); a bare name
    is searched on ``PATH`` and then in the interpreter's directory. Symlinks are kept
    (a virtual environment's ``python`` stays that environment's)."""
    found = shutil.which(command, path=_search_path())
    return os.path.abspath(found) if found else None


def stdio_command_allowed(command: str, allowed: Sequence[str] | None) -> bool:
    """``command`` is one of ``allowed`` (``None``: no restriction), exactly or as the same
    executable after :func:`resolve_command` (``uvx`` in the list also allows
    ``/usr/bin/uvx`` when that is what ``uvx`` resolves to, and the other way round)."""
    if allowed is None:
        return True
    if command in allowed:
        return True
    resolved = resolve_command(command)
    return resolved is not None and resolved in {resolve_command(a) for a in allowed}
