"""What ``build`` is asked to do: :class:`BuildOptions` and the checks made before any work.

The options are plain frozen values (``cli.py`` makes them from flags); nothing
here reads flags, prints or touches the image.  :func:`check_options` raises
the :class:`~ocislim.errors.OcislimError` a wrong combination deserves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ocislim.errors import InputNotFoundError, OutputError, UsageError
from ocislim.image.mutate import ConfigOverrides
from ocislim.image.outlayers import LayerCompression, check_level, output_compression
from ocislim.image.reference import check_tag
from ocislim.image.writer import FORMATS
from ocislim.slim.elfdeps import NETWORK_RULES, lazy_rule_names
from ocislim.slim.keeprules import default_enabled, rule_names
from ocislim.slim.probes import ProbeOptions
from ocislim.slim.rules import KeepOptions

__all__ = [
    "REPORT_SUFFIX",
    "BuildOptions",
    "ConfigOverrides",
    "OutputOptions",
    "RunOptions",
    "check_options",
    "default_report_path",
    "rule_states",
]


REPORT_SUFFIX = ".report.json"


def default_report_path(output: Path) -> Path:
    """Where the report goes without ``--report``: beside OUTPUT, named after it without a
    final ``.tar`` (``out.tar`` -> ``out.report.json``, ``DIR`` -> ``DIR.report.json``), so
    builds into one directory keep their own reports."""
    output = Path(os.path.normpath(output))
    return output.with_name((output.name.removesuffix(".tar") or output.name) + REPORT_SUFFIX)


@dataclass(frozen=True)
class OutputOptions:
    path: Path
    fmt: str = "oci-archive"
    compression: str | None = None  # None: gzip (docker-archive: none)
    level: int | None = None
    tag: str | None = None
    report: Path | None = None  # None: default_report_path(path)
    seccomp_profile: Path | None = None
    package_db: str = "trim"  # trim | keep | drop (see slim/pkgdb.py)
    removed_list: Path | None = None  # one removed path a line
    sboms: tuple[Path, ...] = ()  # .spdx.json or .cdx.json each
    html: Path | None = None  # the report as one self-contained HTML page

    @property
    def report_path(self) -> Path:
        """``--report``, else :func:`default_report_path` of the output."""
        return self.report if self.report is not None else default_report_path(self.path)

    @property
    def layers(self) -> LayerCompression:
        """How the slim layer is compressed: ``--compression``, else gzip; none for
        docker-archive (with a note when ``--compression`` asked for another)."""
        return output_compression(self.fmt, self.compression, "gzip", self.level)


@dataclass(frozen=True)
class RunOptions:
    """The run options ``ocislim trace`` has (the program to probe and its sandbox)."""

    command: tuple[str, ...] = ()
    entrypoint: str | None = None
    cmd: str | None = None
    env: tuple[str, ...] = ()
    workdir: str | None = None
    user: str | None = None
    mounts: tuple[str, ...] = ()
    network: Literal["none", "host"] = "none"
    rootfs: Path | None = None
    show_output: bool = True  # the program's stdout/stderr go to stderr (else nowhere)
    tmpfs_size: int | None = None  # bytes of writes inside (None: the sandbox's default)


@dataclass(frozen=True)
class BuildOptions:
    output: OutputOptions
    run: RunOptions = field(default_factory=RunOptions)
    probes: ProbeOptions = field(default_factory=ProbeOptions)
    keep: KeepOptions = field(default_factory=KeepOptions)
    overrides: ConfigOverrides = field(default_factory=ConfigOverrides)
    include_oslibs_net: bool = True
    enable_rules: tuple[str, ...] = ()
    disable_rules: tuple[str, ...] = ()
    keep_from: Path | tuple[Path, ...] | None = None  # one report, or several (a union)
    verify: bool = True
    verify_rounds: int = 3

    @property
    def keep_from_paths(self) -> tuple[Path, ...]:
        """The ``--keep-from`` reports, in the order given."""
        if self.keep_from is None:
            return ()
        return (self.keep_from,) if isinstance(self.keep_from, Path) else tuple(self.keep_from)

    @property
    def disabled_rules(self) -> frozenset[str]:
        """The rules switched off: ``--disable-rule``, and the network ones when
        ``--no-include-oslibs-net``."""
        disabled = set(self.disable_rules)
        if not self.include_oslibs_net:
            disabled |= NETWORK_RULES
        return frozenset(disabled)

    @property
    def language_rules(self) -> frozenset[str]:
        """The language rules that run: the default ones and ``--enable-rule``, less
        :attr:`disabled_rules`."""
        return frozenset((set(default_enabled()) | set(self.enable_rules)) - self.disabled_rules)


def check_options(options: BuildOptions) -> None:
    """Raise for options that cannot work, before anything is read or run."""
    out = options.output
    if out.fmt not in FORMATS:
        raise UsageError(f"--format {out.fmt!r}: choose one of {', '.join(FORMATS)}")
    known = set(rule_names()) | set(lazy_rule_names())
    for name in (*options.enable_rules, *options.disable_rules):
        if name not in known:
            raise UsageError(f"unknown rule {name!r}; rules: {', '.join(sorted(known))}")
    if options.verify_rounds < 1:
        raise UsageError("--verify-rounds must be at least 1")
    check_level(out.layers.compression, out.level)
    check_tag(out.tag)
    if out.package_db not in ("trim", "keep", "drop"):
        raise UsageError(f"--package-db {out.package_db!r}: choose trim, keep or drop")
    for sbom in out.sboms:
        if not str(sbom).endswith((".spdx.json", ".cdx.json")):
            raise UsageError(f"--sbom {sbom}: the name must end in .spdx.json or .cdx.json")
    if options.probes.continue_after == "enter" and not os.isatty(0):
        raise UsageError(
            "--continue-after enter waits for Enter on a terminal and stdin is not one; "
            "use --continue-after signal (then send SIGUSR1 to ocislim)"
        )
    for report in options.keep_from_paths:
        if not Path(report).is_file():
            raise InputNotFoundError(f"--keep-from {report}: no such file")
    for flag, path in _outputs(out):
        check_writable_dir(Path(os.path.abspath(path)).parent, f"{flag} {path}")


def _outputs(out: OutputOptions) -> list[tuple[str, Path]]:
    """Every file a build writes, with the flag that named it (``-o`` for OUTPUT)."""
    sides = [
        ("--report", out.report_path),
        ("--seccomp-profile", out.seccomp_profile),
        ("--removed-list", out.removed_list),
        ("--html", out.html),
        *(("--sbom", path) for path in out.sboms),
    ]
    return [("-o", out.path), *((flag, p) for flag, p in sides if p is not None)]


def check_writable_dir(directory: Path, what: str) -> None:
    """Raise :class:`OutputError` naming ``directory`` when it exists and this process cannot
    create files in it (so a build fails before its long work, not after).  A missing
    directory is left to the callers' own "no such directory" checks."""
    if not directory.is_dir():
        return
    if os.access(
        directory, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids
    ):
        try:
            read_only = bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
        except OSError:
            read_only = False
        if not read_only:
            return
        raise OutputError(f"cannot write to {directory}: Read-only file system ({what})")
    raise OutputError(f"cannot write to {directory}: Permission denied ({what})")


def rule_states(options: BuildOptions) -> dict[str, list[str]]:
    """The report's ``rules``: every rule's name, enabled or disabled."""
    lazy = set(lazy_rule_names()) - options.disabled_rules
    enabled = sorted(options.language_rules | lazy)
    every = sorted(set(rule_names()) | set(lazy_rule_names()))
    return {"enabled": enabled, "disabled": [r for r in every if r not in enabled]}
