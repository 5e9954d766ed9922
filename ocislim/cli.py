"""Command-line interface: the only module that prints or exits.

Commands are thin: parse flags, call the library, render the result.  Every
:class:`~ocislim.errors.OcislimError` becomes a one-line ``ocislim: error: ...``
on stderr and the exit code its class names.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ocislim import __version__
from ocislim.errors import OcislimError

F = TypeVar("F", bound=Callable[..., Any])


class StderrProgress:
    """Progress on stderr: one line per stage, throttled counters on a TTY."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self._tty = sys.stderr.isatty()
        self._last = 0.0

    def stage(self, name: str, detail: str = "") -> None:
        if not self.quiet:
            self._clear()
            click.echo(f"ocislim: {name}{': ' + detail if detail else ''}", err=True)

    def advance(self, what: str, done: int, total: int | None = None) -> None:
        if self.quiet or not self._tty:
            return
        now = time.monotonic()
        if now - self._last < 0.2 and (total is None or done < total):
            return
        self._last = now
        shown = f"{done}/{total}" if total else str(done)
        sys.stderr.write(f"\r  {what}: {shown}\x1b[K")
        sys.stderr.flush()

    def note(self, message: str) -> None:
        if not self.quiet:
            self._clear()
            click.echo(f"ocislim: note: {message}", err=True)

    def _clear(self) -> None:
        if self._tty:
            sys.stderr.write("\r\x1b[K")


def handle_errors(fn: F) -> F:
    """Turn library errors into one line on stderr and the class's exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except OcislimError as exc:
            click.echo(f"ocislim: error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("ocislim: interrupted", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def emit_json(obj: Any) -> None:
    """Write ``obj`` to stdout as indented, key-sorted JSON."""
    click.echo(json.dumps(obj, indent=2, sort_keys=True))


def image_options(fn: F) -> F:
    """``--ref`` and ``--platform``, shared by every command that reads an image."""
    fn = click.option(
        "--platform",
        metavar="OS/ARCH[/VARIANT]",
        help="Pick one image from a multi-platform index (default: this machine's).",
    )(fn)
    fn = click.option(
        "--ref",
        metavar="NAME",
        help="Pick one image from an archive or layout holding several.",
    )(fn)
    return fn


def quiet_option(fn: F) -> F:
    return click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")(fn)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ocislim")
def main() -> None:
    """Slim OCI images without a daemon or root.

    IMAGE is an oci-archive, a docker-archive or an OCI layout directory; the
    format is detected from content.
    """
