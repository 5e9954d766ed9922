"""The user's keep rules (``--include-*`` flags) as seeds, with their path lists as data.

Each flag becomes :class:`~ocislim.slim.plan.Seed` s carrying
``Reason("rule", flag=...)``.  Path lists may hold globs (``**`` allowed, see
:mod:`ocislim.slim.patterns`), matched against the source image's merged tree.
Nothing here runs anything in the image: programs are found on the image's
``PATH`` by a lookup function, and their ELF closures come from the plan's
static ELF pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ocislim.errors import InputNotFoundError
from ocislim.layers.tree import FileTree
from ocislim.slim.patterns import PatternSet
from ocislim.slim.plan import Reason, Seed

# CA bundles and certificate directories of the common distributions and runtimes.
CERT_PATHS = (
    "/etc/ssl/certs",
    "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/openssl.cnf",
    "/usr/lib/ssl/cert.pem",
    "/usr/lib/ssl/certs",
    "/usr/lib/ssl/openssl.cnf",
    "/usr/local/ssl/cert.pem",
    "/usr/local/ssl/certs",
    "/etc/ca-certificates.conf",
    "/etc/ca-certificates",
    "/usr/share/ca-certificates",
    "/usr/local/share/ca-certificates",
    "/etc/pki/tls/certs",
    "/etc/pki/tls/cert.pem",
    "/etc/pki/ca-trust",
    "/var/lib/ca-certificates",
    "/**/certifi/cacert.pem",
    "/**/lib/security/cacerts",
)
ZONEINFO_PATHS = ("/usr/share/zoneinfo", "/etc/localtime", "/etc/timezone")
# The shell and a few basic tools for debugging a slim image (found on the image's PATH).
SHELL_PROGRAMS = (
    "sh",
    "bash",
    "ls",
    "cat",
    "echo",
    "env",
    "id",
    "ps",
    "pwd",
    "mkdir",
    "rm",
    "cp",
    "mv",
    "grep",
    "sed",
    "head",
    "tail",
    "sleep",
    "true",
    "false",
)


@dataclass(frozen=True)
class KeepOptions:
    """What the user asked to keep (and exclude) beyond the trace."""

    include_paths: tuple[str, ...] = ()
    include_path_files: tuple[Path, ...] = ()
    include_bins: tuple[str, ...] = ()
    include_exes: tuple[str, ...] = ()
    include_shell: bool = False
    include_cert_all: bool = True
    include_zoneinfo: bool = False
    include_workdir: bool = False
    exclude_patterns: tuple[str, ...] = ()


def read_path_file(path: Path) -> list[str]:
    """Paths listed in a file: one a line; blank lines and ``#`` comments skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputNotFoundError(f"{path}: cannot read ({exc.strerror})") from None
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _is_glob(path: str) -> bool:
    return any(c in path for c in "*?[")


def expand(tree: FileTree, paths: Sequence[str]) -> dict[str, list[str]]:
    """Each of ``paths`` mapped to the tree paths it names (globs expanded, one walk)."""
    out: dict[str, list[str]] = {p: [] for p in paths}
    globs = [p for p in paths if _is_glob(p)]
    for plain in paths:
        if not _is_glob(plain):
            out[plain] = [plain]
    if globs:
        sets = [(g, PatternSet([g])) for g in globs]
        for entry in tree.walk():
            for pattern, pset in sets:
                if pset.match(entry.path):
                    out[pattern].append(entry.path)
    return out


def user_seeds(
    options: KeepOptions,
    tree: FileTree,
    find_program: Callable[[str], str | None],
    workdir: str,
    note: Callable[[str], None] = lambda message: None,
) -> list[Seed]:
    """Seeds for every ``--include-*`` flag.  ``note`` hears about names not found."""
    requests: list[tuple[str, str, bool]] = []  # (path or glob, flag, recursive)
    requests += [(p, "--include-path", True) for p in options.include_paths]
    for list_file in options.include_path_files:
        flag = f"--include-path-file {list_file}"
        requests += [(p, flag, True) for p in read_path_file(list_file)]
    requests += [(p, "--include-bin", False) for p in options.include_bins]
    for name in options.include_exes:
        found = find_program(name)
        if found is None:
            note(f"--include-exe {name}: not found on the image's PATH")
        else:
            requests.append((found, "--include-exe", False))
    if options.include_shell:
        for name in SHELL_PROGRAMS:
            found = find_program(name)
            if found is not None:
                requests.append((found, "--include-shell", False))
    if options.include_cert_all:
        requests += [(p, "--include-cert-all", True) for p in CERT_PATHS]
    if options.include_zoneinfo:
        requests += [(p, "--include-zoneinfo", True) for p in ZONEINFO_PATHS]
    if options.include_workdir and workdir not in ("", "/"):
        requests.append((workdir, "--include-workdir", True))

    expanded = expand(tree, [p for p, _, _ in requests])
    seeds: list[Seed] = []
    quiet_flags = ("--include-cert-all", "--include-zoneinfo", "--include-shell")
    for path, flag, recursive in requests:
        matched = expanded[path]
        if not _is_glob(path) and tree.get(tree.resolve(path)) is None:
            matched = []
        if not matched and flag not in quiet_flags:
            note(f"{flag} {path}: not in the image")
        reason = Reason("rule", detail=path, flag=flag.split(" ", 1)[0])
        seeds += [Seed(m, reason, recursive=recursive) for m in matched]
    return seeds
