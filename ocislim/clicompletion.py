"""``ocislim completion bash|zsh|fish``: the shell completion script, from click's own support.

The script asks ``ocislim`` itself for candidates at each <TAB> (it runs
``_OCISLIM_COMPLETE=bash_complete ocislim ...``), so commands, flags and choices
always match the installed version.  Nothing here prints: ``cli.py`` shows
:func:`completion_script`'s text.
"""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

SHELLS = ("bash", "zsh", "fish")
PROG = "ocislim"
COMPLETE_VAR = "_OCISLIM_COMPLETE"


def completion_script(cli: click.Command, shell: str) -> str:
    """The completion script for ``shell`` (one of :data:`SHELLS`), ending in a newline."""
    cls = get_completion_class(shell)
    if cls is None:  # click.Choice keeps other names out; a guard for direct callers
        raise ValueError(f"no completion for {shell!r}")
    text = cls(cli, {}, PROG, COMPLETE_VAR).source()
    names = sorted(cli.commands) if isinstance(cli, click.Group) else []
    # At the end: zsh wants "#compdef" on the first line.
    tail = f"# {PROG} {shell} completion; commands: {' '.join(names)}\n"
    return (text if text.endswith("\n") else text + "\n") + tail
