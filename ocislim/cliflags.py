"""The commands' flags and what they mean: click declarations and their conversion.

Declarations are click decorators (several shared by more than one command);
conversions turn parsed flags into a sandbox :class:`~ocislim.sandbox.RunSpec`
or :class:`~ocislim.slim.options.BuildOptions`.  Nothing here prints or exits:
a bad value raises :class:`~ocislim.errors.UsageError`, which ``cli.py``
reports.  Library modules are imported when flags are converted, so ``--help``
stays fast.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ocislim.errors import UsageError

if TYPE_CHECKING:
    from ocislim.image.models import ImageConfig
    from ocislim.sandbox import RunSpec
    from ocislim.slim.options import BuildOptions

F = TypeVar("F", bound=Callable[..., Any])
Decorator = Callable[[Any], Any]
# The library's names (image.writer.FORMATS, image.compression.ALGORITHMS), not imported so
# that --help stays fast; a unit test keeps them equal.
FORMATS = ["oci-archive", "docker-archive", "oci-dir"]
COMPRESSIONS = ["gzip", "zstd", "none"]
LEVEL_HELP = "Compression level: gzip 1-9 (default 6), zstd 1-22 (default 3)."  # outlayers'


def _apply(fn: F, options: list[Decorator]) -> F:
    """Decorate ``fn`` with ``options``, listed in the order ``--help`` shows them."""
    for option in reversed(options):
        fn = option(fn)
    return fn


def image_options(fn: F) -> F:
    """``--ref`` and ``--platform``, shared by every command that reads an image."""
    return _apply(
        fn,
        [
            click.option(
                "--ref",
                metavar="NAME",
                help="Pick one image from an archive or layout holding several (or @N).",
            ),
            click.option(
                "--platform",
                metavar="OS/ARCH[/VARIANT]",
                help="Pick one image from a multi-platform index (default: this machine's).",
            ),
        ],
    )


def quiet_option(fn: F) -> F:
    return click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")(fn)


def rootfs_option() -> Decorator:
    """``--rootfs DIR`` of the commands that need the image unpacked."""
    return click.option(
        "--rootfs",
        type=click.Path(file_okay=False),
        metavar="DIR",
        help="Unpack into DIR, or reuse DIR if it already holds this image.",
    )


def format_options(compression_help: str) -> list[Decorator]:
    """``--format``, ``--compression`` and ``--level`` of the commands that write an image."""
    return [
        click.option(
            "--format",
            "fmt",
            type=click.Choice(FORMATS),
            help="Output format (default: OUTPUT's TRANSPORT: if any, else oci-archive).",
        ),
        click.option("--compression", type=click.Choice(COMPRESSIONS), help=compression_help),
        click.option("--level", type=int, metavar="N", help=LEVEL_HELP),
    ]


def convert_options(fn: F) -> F:
    """The ``convert`` command's flags after OUTPUT and the image options."""
    layers = "Layer compression (default: keep each layer's; docker-archive is uncompressed)."
    return _apply(
        fn,
        [
            *format_options(layers),
            click.option("--flatten", is_flag=True, help="Merge all layers into one."),
            click.option("--tag", metavar="NAME:TAG", help="Output reference (lower-case NAME)."),
        ],
    )


def xray_options(fn: F) -> F:
    """The ``xray`` command's flags after the image options."""
    return _apply(
        fn,
        [
            click.option(
                "--json", "as_json", is_flag=True, help="Print the report as JSON on stdout."
            ),
            click.option(
                "--top",
                type=click.IntRange(0),
                default=10,
                show_default=True,
                metavar="N",
                help="Largest files listed per layer (and rows of the long tables).",
            ),
            click.option(
                "--dockerfile",
                type=click.Path(dir_okay=False),
                metavar="FILE",
                help="Also write a Dockerfile reverse-engineered from the history (atomically).",
            ),
        ],
    )


def deps_options(fn: F) -> F:
    """The ``deps`` command's flags after its PATHs."""
    return _apply(
        fn,
        [
            click.option(
                "--all", "all_objects", is_flag=True, help="Analyse every ELF object in the image."
            ),
            rootfs_option(),
            click.option("--json", "as_json", is_flag=True, help="Print a JSON object on stdout."),
            click.option("--tree", is_flag=True, help="Show each object's load tree."),
        ],
    )


def diff_options(fn: F) -> F:
    """The ``diff`` command's flags after its two images."""
    return _apply(
        fn,
        [
            click.option(
                "--type",
                "types",
                metavar="TYPES",
                help="Comma-separated: file,apt,apk,pip,npm,size,config,history (default: all).",
            ),
            click.option("--ref-a", metavar="NAME", help="Pick one image from IMAGE_A."),
            click.option("--ref-b", metavar="NAME", help="Pick one image from IMAGE_B."),
            click.option(
                "--platform", metavar="OS/ARCH[/VARIANT]", help="Platform to pick in both."
            ),
            click.option(
                "--json", "as_json", is_flag=True, help="Print the report as JSON on stdout."
            ),
        ],
    )


def sandbox_options(fn: F) -> F:
    """Options shared by ``run`` and ``trace``."""
    options = [
        click.option("--entrypoint", metavar="CMD", help="Replace the image's entrypoint."),
        click.option("--cmd", metavar="ARGS", help="Replace the image's cmd."),
        click.option("--env", "-e", multiple=True, metavar="K=V", help="Set a variable."),
        click.option("--workdir", "-w", metavar="DIR", help="Working directory inside."),
        click.option("--user", "-u", metavar="USER[:GROUP]", help="Name or id in the image."),
        click.option("--mount", multiple=True, metavar="HOST:PATH[:ro]", help="Bind a host path."),
        click.option(
            "--network",
            type=click.Choice(["none", "host"]),
            default="none",
            show_default=True,
            help="none: private network with loopback only.",
        ),
        click.option("--timeout", type=float, metavar="SECONDS", help="Then SIGTERM, SIGKILL."),
        click.option("--tmpfs-size", metavar="SIZE", help="Writes inside (e.g. 512m; 1g)."),
        rootfs_option(),
        click.option("--exec", "exec_", multiple=True, metavar="CMD", help="Probe: sh -c CMD."),
        click.option(
            "--exec-file",
            multiple=True,
            type=click.Path(dir_okay=False),
            help="Probe: run this script inside.",
        ),
        click.argument("command", nargs=-1, type=click.UNPROCESSED),
    ]
    return _apply(fn, options)


def _sbom_names(ctx: Any, param: Any, value: tuple[Path, ...]) -> tuple[Path, ...]:
    for path in value:
        if not str(path).endswith((".spdx.json", ".cdx.json")):
            raise click.BadParameter(f"{path}: the name must end in .spdx.json or .cdx.json")
    return value


def sbom_options(fn: F) -> F:
    """The ``sbom`` command's flags."""
    options = [
        click.option(
            "-o",
            "--output",
            "outputs",
            required=True,
            multiple=True,
            type=click.Path(dir_okay=False, path_type=Path),
            callback=_sbom_names,
            metavar="FILE",
            help="SBOM file: .spdx.json (SPDX 2.3) or .cdx.json (CycloneDX 1.5); repeatable.",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout."),
    ]
    return _apply(fn, options)


def report_options(fn: F) -> F:
    """The ``report`` command's flags."""
    options = [
        click.option(
            "--html",
            required=True,
            type=click.Path(dir_okay=False),
            metavar="FILE",
            help="Write the report as one self-contained HTML page.",
        ),
    ]
    return _apply(fn, options)


def exec_options(fn: F) -> F:
    """The ``exec`` command's flags and arguments (like ``docker exec``)."""
    return _apply(
        fn,
        [
            click.argument("sandbox", metavar="SANDBOX"),
            click.option("-i", "--interactive", is_flag=True, help="Give it our stdin."),
            click.option("-t", "--tty", "terminal", is_flag=True, help="Give it a terminal."),
            click.option("--env", "-e", multiple=True, metavar="K=V", help="Set a variable."),
            click.option("--workdir", "-w", metavar="DIR", help="Working directory inside."),
            click.option("--user", "-u", metavar="USER[:GROUP]", help="Name or id in the image."),
            click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED),
        ],
    )


def ps_options(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")(fn)


def build_options(fn: F) -> F:
    """The ``build`` command's own flags (the run options come from ``sandbox_options``)."""
    multi: dict[str, Any] = {"multiple": True}
    options = [
        click.option(
            "-o", "--output", required=True, type=click.Path(), metavar="OUTPUT", help="Slim image."
        ),
        *format_options("Layer compression (default gzip; docker-archive is uncompressed)."),
        click.option("--tag", metavar="NAME:TAG", help="Default: the source's NAME.slim:TAG."),
        click.option("--report", type=click.Path(dir_okay=False), help="Default: OUT.report.json."),
        click.option(
            "--seccomp-profile",
            type=click.Path(dir_okay=False),
            metavar="FILE",
            help="Also write a seccomp profile of the observed system calls.",
        ),
        click.option(
            "--package-db",
            type=click.Choice(["trim", "keep", "drop"]),
            default="trim",
            show_default=True,
            help="Package databases: trimmed to what is kept, kept whole, or left out.",
        ),
        click.option(
            "--removed-list",
            type=click.Path(dir_okay=False),
            metavar="FILE",
            help="Write every removed path, one a line.",
        ),
        click.option(
            "--sbom",
            type=click.Path(dir_okay=False),
            metavar="FILE",
            help="Write an SBOM of the slim image (.spdx.json or .cdx.json).",
            **multi,
        ),
        click.option(
            "--html", type=click.Path(dir_okay=False), metavar="FILE", help="HTML report."
        ),
        click.option("--http-probe/--no-http-probe", default=None, help="Default: if ports."),
        click.option(
            "--http-probe-cmd", metavar="METHOD:PATH", help="HTTP probe request.", **multi
        ),
        click.option("--http-probe-ports", metavar="PORT[,PORT]", help="Default: exposed ports."),
        click.option(
            "--continue-after",
            type=click.Choice(["exec", "probe", "timeout", "app-exit", "enter", "signal"]),
            help="When to stop the program (default: from the probes given); enter: "
            "Enter on the terminal; signal: SIGUSR1 to ocislim.",
        ),
        click.option(
            "--include-path",
            "--preserve-path",  # docker-slim's word; original headers are always kept
            "include_path",
            metavar="PATH",
            help="File or directory.",
            **multi,
        ),
        click.option(
            "--include-path-file",
            "--preserve-path-file",
            "include_path_file",
            type=click.Path(dir_okay=False),
            metavar="FILE",
            help="Paths to keep, one a line.",
            **multi,
        ),
        click.option("--exclude-pattern", metavar="GLOB", help="'**' allowed.", **multi),
        click.option("--include-bin", metavar="PATH", help="With its ELF closure.", **multi),
        click.option("--include-exe", metavar="NAME", help="Found on the image's PATH.", **multi),
        click.option("--include-shell", is_flag=True, help="The shell and basic tools."),
        click.option("--include-cert-all/--no-include-cert-all", default=True, show_default=True),
        click.option(
            "--include-oslibs-net/--no-include-oslibs-net", default=True, show_default=True
        ),
        click.option("--include-zoneinfo", is_flag=True, help="Time zone data."),
        click.option("--include-workdir", is_flag=True, help="The WorkingDir, whole."),
        click.option(
            "--keep-from",
            type=click.Path(dir_okay=False),
            metavar="REPORT",
            multiple=True,
            help="Keep what an earlier report kept; no tracing (repeat: the union).",
        ),
        click.option("--enable-rule", metavar="NAME", help="Switch a keep rule on.", **multi),
        click.option("--disable-rule", metavar="NAME", help="Switch a keep rule off.", **multi),
        click.option("--new-entrypoint", metavar="CMD|JSON", help="Output's entrypoint."),
        click.option("--new-cmd", metavar="ARGS|JSON", help="Output's cmd."),
        click.option("--new-env", metavar="K=V", help="Set in the output's Env.", **multi),
        click.option("--new-workdir", metavar="DIR", help="Output's WorkingDir."),
        click.option("--new-label", metavar="K=V", help="Set an output label.", **multi),
        click.option("--no-verify", is_flag=True, help="Do not run the probes on the result."),
        click.option("--show-clogs", is_flag=True, help="Show the program's output, even with -q."),
        click.option("--verify-rounds", type=click.IntRange(1, 10), default=3, show_default=True),
        click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout."),
    ]
    return _apply(fn, options)


def run_spec_from_flags(config: ImageConfig, root: Path, opts: dict[str, Any]) -> RunSpec:
    """The sandbox run ``run`` and ``trace`` flags ask for (click parameter names).

    The program's stdout is ours with ``--json`` (stderr) and stdout otherwise.
    ``label``: (image, traced): the run accepts ``ocislim exec`` under a new id."""
    import dataclasses

    from ocislim.sandbox import (
        DEFAULT_TMPFS_SIZE,
        Probe,
        SandboxLabel,
        new_sandbox_id,
        parse_size,
        run_spec,
    )

    probes = [Probe(command=c) for c in opts["exec_"]]
    probes += [Probe(script=Path(f)) for f in opts["exec_file"]]
    spec = run_spec(
        config,
        root,
        command=opts["command"],
        entrypoint=opts["entrypoint"],
        cmd=opts["cmd"],
        env=opts["env"],
        workdir=opts["workdir"],
        user=opts["user"],
        mounts=opts["mount"],
        network=opts["network"],
        timeout=opts["timeout"],
        probes=probes,
        stdout=2 if opts.get("as_json") else 1,
        tmpfs_size=parse_size(opts["tmpfs_size"]) if opts["tmpfs_size"] else DEFAULT_TMPFS_SIZE,
    )
    if "label" not in opts:
        return spec
    image, traced = opts["label"]
    label = SandboxLabel(new_sandbox_id(), image, "trace" if traced else "run")
    return dataclasses.replace(spec, sandbox=label)


def parse_command_list(value: str | None) -> list[str] | None:
    """``--new-entrypoint``/``--new-cmd``: a JSON array, or words split like a shell."""
    if value is None:
        return None
    text = value.strip()
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if not isinstance(parsed, list) or not all(isinstance(x, str) for x in parsed):
            raise UsageError(f"{value!r}: expected a JSON array of strings")
        return parsed
    return shlex.split(text)


def options_from_flags(flags: dict[str, Any]) -> BuildOptions:
    """BuildOptions from the ``build`` command's flags (click parameter names)."""
    from ocislim.image.mutate import ConfigOverrides
    from ocislim.image.transport import resolve_output
    from ocislim.sandbox import parse_size
    from ocislim.slim.options import BuildOptions, OutputOptions, RunOptions
    from ocislim.slim.probes import ProbeOptions
    from ocislim.slim.rules import KeepOptions

    ports: list[int] = []
    for item in (flags.get("http_probe_ports") or "").replace(" ", "").split(","):
        if not item:
            continue
        if not item.isdigit() or not 0 < int(item) < 65536:
            raise UsageError(f"--http-probe-ports: {item!r} is not a port number")
        ports.append(int(item))
    out = resolve_output(flags["output"], flags.get("fmt"), flags.get("tag"))
    output = OutputOptions(
        path=out.path,
        fmt=out.fmt,
        compression=flags.get("compression"),
        level=flags.get("level"),
        tag=out.tag,
        report=Path(flags["report"]) if flags.get("report") else None,
        seccomp_profile=Path(flags["seccomp_profile"]) if flags.get("seccomp_profile") else None,
        package_db=flags.get("package_db") or "trim",
        removed_list=Path(flags["removed_list"]) if flags.get("removed_list") else None,
        sboms=tuple(Path(f) for f in flags.get("sbom") or ()),
        html=Path(flags["html"]) if flags.get("html") else None,
    )
    run_options = RunOptions(
        command=tuple(flags.get("command") or ()),
        entrypoint=flags.get("entrypoint"),
        cmd=flags.get("cmd"),
        env=tuple(flags.get("env") or ()),
        workdir=flags.get("workdir"),
        user=flags.get("user"),
        mounts=tuple(flags.get("mount") or ()),
        network=flags.get("network") or "none",
        rootfs=Path(flags["rootfs"]) if flags.get("rootfs") else None,
        show_output=not flags.get("quiet", False) or bool(flags.get("show_clogs")),
        tmpfs_size=parse_size(flags["tmpfs_size"]) if flags.get("tmpfs_size") else None,
    )
    probes = ProbeOptions(
        exec_commands=tuple(flags.get("exec_") or ()),
        exec_files=tuple(Path(f) for f in flags.get("exec_file") or ()),
        http=flags.get("http_probe"),
        http_commands=tuple(flags.get("http_probe_cmd") or ()),
        http_ports=tuple(ports),
        continue_after=flags.get("continue_after"),
        timeout=flags.get("timeout"),
    )
    keep = KeepOptions(
        include_paths=tuple(flags.get("include_path") or ()),
        include_path_files=tuple(Path(f) for f in flags.get("include_path_file") or ()),
        include_bins=tuple(flags.get("include_bin") or ()),
        include_exes=tuple(flags.get("include_exe") or ()),
        include_shell=bool(flags.get("include_shell")),
        include_cert_all=flags.get("include_cert_all", True),
        include_zoneinfo=bool(flags.get("include_zoneinfo")),
        include_workdir=bool(flags.get("include_workdir")),
        exclude_patterns=tuple(flags.get("exclude_pattern") or ()),
    )
    overrides = ConfigOverrides(
        entrypoint=parse_command_list(flags.get("new_entrypoint")),
        cmd=parse_command_list(flags.get("new_cmd")),
        env=tuple(flags.get("new_env") or ()),
        workdir=flags.get("new_workdir"),
        labels=tuple(flags.get("new_label") or ()),
    )
    return BuildOptions(
        output=output,
        run=run_options,
        probes=probes,
        keep=keep,
        overrides=overrides,
        include_oslibs_net=flags.get("include_oslibs_net", True),
        enable_rules=tuple(flags.get("enable_rule") or ()),
        disable_rules=tuple(flags.get("disable_rule") or ()),
        keep_from=tuple(Path(p) for p in flags.get("keep_from") or ()) or None,
        verify=not flags.get("no_verify", False),
        verify_rounds=flags.get("verify_rounds") or 3,
    )
