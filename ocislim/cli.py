"""Command-line interface: the only module that prints or exits.

Commands are thin: parse flags, call the library, render the result.  Every
:class:`~ocislim.errors.OcislimError` becomes a one-line ``ocislim: error: ...``
on stderr and the exit code its class names.
"""

from __future__ import annotations

import functools
import json
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ocislim import __version__
from ocislim.cliflags import (
    build_options,
    convert_options,
    deps_options,
    diff_options,
    exec_options,
    image_options,
    options_from_flags,
    ps_options,
    quiet_option,
    report_options,
    sandbox_options,
    sbom_options,
    xray_options,
)
from ocislim.cliprogress import StreamProgress
from ocislim.errors import OcislimError, OutputError
from ocislim.humanize import human_size, plural
from ocislim.scratch import sweep_at_start

if TYPE_CHECKING:
    from ocislim.image import Image

F = TypeVar("F", bound=Callable[..., Any])


def StderrProgress(quiet: bool) -> StreamProgress:
    """Progress on stderr: a live bar on a terminal, periodic lines otherwise; none if ``quiet``."""
    return StreamProgress(sys.stderr, quiet)


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so SIGTERM cleans up temporary files exactly like Ctrl-C


def handle_errors(fn: F) -> F:
    """Turn library errors into one line on stderr and the class's exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _terminated)
        sweep_at_start(kwargs.get(k) for k in ("output", "directory", "rootfs"))
        try:
            return fn(*args, **kwargs)
        except (OcislimError, OSError) as exc:
            from ocislim.clisupport import error_text

            click.echo(f"ocislim: error: {error_text(exc)}", err=True)
            sys.exit(exc.exit_code if isinstance(exc, OcislimError) else OutputError.exit_code)
        except KeyboardInterrupt:
            click.echo("ocislim: interrupted", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def emit_json(obj: Any) -> None:
    """Write ``obj`` to stdout as indented, key-sorted JSON."""
    click.echo(json.dumps(obj, indent=2, sort_keys=True))


def _show(as_json: bool, obj: Any, text: Callable[[], str]) -> None:
    """``obj`` as JSON with ``--json``, else the text ``text()`` makes (ending in a newline)."""
    if as_json:
        emit_json(obj)
    else:
        click.echo(text(), nl=False)


# click >= 8.2 raises this for a bare group invocation; older versions print help themselves.
_NO_ARGS_IS_HELP: Any = getattr(click.exceptions, "NoArgsIsHelpError", ())


class _OneLineErrors(click.Group):
    """A group whose flag and argument errors are one ``ocislim: error:`` line, exit code 2.

    click's own rendering prints the usage block first; scripts and users grep for
    one line, the same shape as every other error.
    """

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if standalone_mode is False:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _NO_ARGS_IS_HELP as exc:
            exc.show()  # bare "ocislim": the help text, not an error line
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            ctx = getattr(exc, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            message = " ".join(exc.format_message().split())
            click.echo(f"ocislim: error: {message}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("ocislim: interrupted", err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=_OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ocislim")
def main() -> None:
    """Slim OCI images without a daemon or root.

    IMAGE is an oci-archive or docker-archive (gzip or zstd too), an OCI layout
    or skopeo dir, - for stdin, or TRANSPORT:PATH[:REF] (oci-archive, docker-archive,
    oci, dir); the format is detected from content.  OUTPUT may be TRANSPORT:PATH[:TAG].
    """


def _open(path: str, ref: str | None, platform: str | None, ref_flag: str = "--ref") -> Image:
    """Open IMAGE (imported here so ``--help`` stays fast)."""
    from ocislim.image import open_image

    return open_image(path, ref=ref, platform=platform, ref_flag=ref_flag)


@main.command()
@click.argument("image", metavar="IMAGE")
@image_options
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object on stdout.")
@quiet_option
@handle_errors
def inspect(image: str, ref: str | None, platform: str | None, as_json: bool, quiet: bool) -> None:
    """Show an image's identity, layers, config and history.

    Every layer is read once (and verified) to count entries and bytes.
    """
    from ocislim.inspect.describe import describe
    from ocislim.inspect.describe_text import render_text

    with _open(image, ref, platform) as img:
        info = describe(img, StderrProgress(quiet or as_json))
    _show(as_json, info, lambda: render_text(info) + "\n")


@main.command()
@click.argument("image", metavar="IMAGE")
@click.argument("directory", metavar="DIR", type=click.Path(file_okay=False))
@image_options
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@quiet_option
@handle_errors
def unpack(
    image: str, directory: str, ref: str | None, platform: str | None, as_json: bool, quiet: bool
) -> None:
    """Write the merged root filesystem of IMAGE into DIR (absent or empty).

    Safe on hostile archives; as a plain user, ownership is not changed and
    device nodes are skipped.  DIR appears only when the unpack is complete.
    """
    from ocislim.layers.unpack import unpack as do_unpack

    progress = StderrProgress(quiet or as_json)
    with _open(image, ref, platform) as img:
        result = do_unpack(img, Path(directory), progress)
    paths = result.entries - 1  # the tree's entries hold the root /, which is no path
    summary = {
        "directory": str(result.root),
        "entries": result.entries,
        "paths": paths,
        "skipped_devices": result.skipped_devices,
        "privileged": result.privileged,
    }
    if as_json:
        emit_json(summary)
    elif not quiet:
        click.echo(f"unpacked {plural(paths, 'path')} into {result.root}", err=True)


@main.command()
@click.argument("image", metavar="IMAGE")
@click.argument("output", metavar="OUTPUT", type=click.Path())
@image_options
@convert_options
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@quiet_option
@handle_errors
def convert(
    image: str,
    output: str,
    ref: str | None,
    platform: str | None,
    as_json: bool,
    quiet: bool,
    **f: Any,
) -> None:
    """Rewrite IMAGE as OUTPUT: change format or compression, or flatten the layers."""
    from ocislim.convert import ConvertOptions
    from ocislim.convert import convert as do_convert
    from ocislim.image.transport import resolve_output

    out = resolve_output(output, f["fmt"], f["tag"])
    options = ConvertOptions(out.fmt, f["compression"], f["level"], f["flatten"], out.tag)
    options.check()  # before the image is read
    progress = StderrProgress(quiet or as_json)
    with _open(image, ref, platform) as img:
        written = do_convert(img, out.path, options, progress)
    summary = {
        "output": str(written.path),
        "format": written.format,
        "manifest_digest": str(written.manifest_digest),
        "config_digest": str(written.config_digest),
        "size": written.size,
    }
    if as_json:
        emit_json(summary)
    elif not quiet:
        click.echo(f"wrote {written.path} ({written.format}, {human_size(written.size)})", err=True)


# --- run / trace (sandbox) ------------------------------------------------------------


@main.command(context_settings={"ignore_unknown_options": False})
@click.argument("image", metavar="IMAGE")
@sandbox_options
@image_options
@quiet_option
@handle_errors
def run(image: str, quiet: bool, **opts: Any) -> None:
    """Run IMAGE's program in a rootless sandbox; exit with its exit code.

    COMMAND after -- replaces the entrypoint and cmd.
    """
    from ocislim.clisupport import sandboxed

    result, failed = sandboxed(image, opts, False, StderrProgress(quiet))
    if failed:
        click.echo(f"ocislim: error: {failed}", err=True)
    sys.exit(result.exit_code)


@main.command()
@click.argument("image", metavar="IMAGE")
@sandbox_options
@click.option("--json", "as_json", is_flag=True, help="Print the trace as JSON on stdout.")
@click.option("--syscalls", is_flag=True, help="Also count every system call (slower).")
@image_options
@quiet_option
@handle_errors
def trace(image: str, quiet: bool, as_json: bool, syscalls: bool, **opts: Any) -> None:
    """Run IMAGE's program traced and list every image file it touched.

    The program's stdout goes to stderr with --json.  Exit code: the program's.
    """
    opts.update(as_json=as_json, syscalls=syscalls)
    from ocislim.clisupport import sandboxed, trace_text

    result, failed = sandboxed(image, opts, True, StderrProgress(quiet or as_json))
    _show(as_json, result.to_json(), lambda: trace_text(result, syscalls))
    if failed:
        click.echo(f"ocislim: error: {failed}", err=True)
    sys.exit(result.exit_code)


@main.command(name="exec", context_settings={"ignore_unknown_options": True})
@exec_options
@handle_errors
def exec_(sandbox: str, command: tuple[str, ...], **opts: Any) -> None:
    """Run COMMAND in the running sandbox SANDBOX (an id from 'ocislim ps', or its
    start); exit with its exit code.  Only the user who started the sandbox can."""
    from ocislim.sandbox import exec_command, find_sandbox

    env, workdir, user = opts["env"], opts["workdir"], opts["user"]
    code = exec_command(
        find_sandbox(sandbox), command, env, workdir, user, opts["interactive"], opts["terminal"]
    )
    sys.exit(code)


@main.command()
@ps_options
@handle_errors
def ps(as_json: bool) -> None:
    """List this user's running sandboxes (of build, trace and run)."""
    from ocislim.clisupport import ps_text
    from ocislim.sandbox import running_sandboxes

    found = running_sandboxes()
    _show(as_json, [e.to_json() for e in found], lambda: ps_text(found))


@main.command()
@click.argument("image", metavar="IMAGE")
@image_options
@xray_options
@quiet_option
@handle_errors
def xray(
    image: str,
    ref: str | None,
    platform: str | None,
    as_json: bool,
    top: int,
    dockerfile: str | None,
    quiet: bool,
) -> None:
    """Show what is inside IMAGE: layers, largest files, wasted space, duplicates,
    setuid files, shells, CA bundles, packages, users.  Reads each layer once."""
    from ocislim.clisupport import check_output_dirs
    from ocislim.inspect.dockerfile import reconstruct
    from ocislim.inspect.xray import render_text
    from ocislim.inspect.xray import xray as do_xray
    from ocislim.outputs import write_text_atomic

    check_output_dirs([("--dockerfile", dockerfile)])  # before the scan, not after
    with _open(image, ref, platform) as img:
        report = do_xray(img, top=top, progress=StderrProgress(quiet or as_json))
        if dockerfile:
            write_text_atomic(Path(dockerfile), reconstruct(img.config))
    _show(as_json, report, lambda: render_text(report, top))


@main.command()
@click.argument("image_a", metavar="IMAGE_A")
@click.argument("image_b", metavar="IMAGE_B")
@diff_options
@quiet_option
@handle_errors
def diff(
    image_a: str,
    image_b: str,
    types: str | None,
    ref_a: str | None,
    ref_b: str | None,
    platform: str | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Compare IMAGE_A with IMAGE_B: files, packages, size, config and history.

    The images may be in different formats; each is read once.  Exit code 0
    whether or not they differ (see "identical" in --json); non-zero on errors.
    """
    from ocislim.inspect.diff import diff as do_diff
    from ocislim.inspect.diff import parse_types, render_text

    chosen = parse_types(types)
    with (
        _open(image_a, ref_a, platform, "--ref-a") as img_a,
        _open(image_b, ref_b, platform, "--ref-b") as img_b,
    ):
        report = do_diff(img_a, img_b, chosen, StderrProgress(quiet or as_json))
    _show(as_json, report, lambda: render_text(report))


@main.command()
@click.argument("image", metavar="IMAGE")
@click.argument("paths", nargs=-1, metavar="[PATH]...")
@deps_options
@image_options
@quiet_option
@handle_errors
def deps(
    image: str,
    paths: tuple[str, ...],
    all_objects: bool,
    rootfs: str | None,
    as_json: bool,
    tree: bool,
    ref: str | None,
    platform: str | None,
    quiet: bool,
) -> None:
    """List what the loader and glibc need for PATHs in IMAGE, without running them.

    PATHs are in-image programs, libraries or scripts (names without / are looked
    up on the image's PATH); default: the entrypoint's program.  Lazy loads (NSS
    modules, libgcc_s, gconv) are included.  Missing libraries are reported, exit 0.
    """
    from ocislim.elf import analyze_config, render_list, render_tree
    from ocislim.layers.rootfs import prepared_rootfs

    progress = StderrProgress(quiet or as_json)
    target = Path(rootfs) if rootfs else None
    with _open(image, ref, platform) as img, prepared_rootfs(img, target, progress) as root:
        result = analyze_config(root, img.config, paths, all_objects=all_objects, progress=progress)
    _show(as_json, result.to_json(), lambda: (render_tree if tree else render_list)(result))


# --- build (slim) ---------------------------------------------------------------------


@main.command()
@click.argument("image", metavar="IMAGE")
@build_options
@sandbox_options
@image_options
@quiet_option
@handle_errors
def build(image: str, quiet: bool, as_json: bool, **flags: Any) -> None:
    """Slim IMAGE: run it traced, keep what it needs, verify, write OUTPUT.

    COMMAND after -- replaces the entrypoint and cmd for probing only.
    """
    from ocislim.slim.build import build as do_build
    from ocislim.slim.report import render_summary

    options = options_from_flags({**flags, "quiet": quiet})
    with _open(image, flags["ref"], flags["platform"]) as img:
        result = do_build(img, options, StderrProgress(quiet or as_json))
    _show(as_json, result.summary(), lambda: render_summary(result.summary()))


@main.command()
@click.argument("image", metavar="IMAGE")
@sbom_options
@image_options
@quiet_option
@handle_errors
def sbom(image: str, outputs: tuple[Path, ...], as_json: bool, quiet: bool, **flags: Any) -> None:
    """Write SBOMs of IMAGE: packages (whole or partial), files with SHA-256, identity."""
    from ocislim.clisupport import check_output_dirs
    from ocislim.slim import sbom as sbom_mod

    check_output_dirs([("-o", str(p)) for p in outputs])
    with _open(image, flags["ref"], flags["platform"]) as img:
        inventory = sbom_mod.inventory(img, progress=StderrProgress(quiet or as_json))
    sbom_mod.write_sboms(inventory, list(outputs))
    if as_json:
        emit_json(sbom_mod.summary(inventory))
    elif not quiet:
        counts = [plural(len(inventory.packages), "package"), plural(len(inventory.files), "file")]
        click.echo(", ".join(counts), err=True)


@main.command()
@click.argument("report", metavar="REPORT.json", type=click.Path(dir_okay=False))
@report_options
@handle_errors
def report(report: str, html: str) -> None:
    """Render a build report (OUTPUT.report.json) as one self-contained HTML page."""
    from ocislim.htmlreport import write_html
    from ocislim.slim.report import load

    write_html(load(Path(report)), Path(html))


@main.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print a shell completion script (bash, zsh or fish; see the README)."""
    from ocislim.clicompletion import completion_script

    click.echo(completion_script(main, shell), nl=False)
