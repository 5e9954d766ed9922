"""Where the image's dynamic loader finds a library, decided without running it.

Implements the search rules of glibc's ``ld.so`` and of musl's loader, rooted in the
image (every lookup goes through :class:`~ocislim.elf.rootpath.RootFS`):

glibc, for a ``DT_NEEDED`` name without a slash requested by object L:
  1. ``DT_RPATH`` of L, then of the object that loaded L, and so on up to the main
     program — skipped entirely when L has ``DT_RUNPATH`` (an object's RPATH is
     ignored when it has a RUNPATH of its own);
  2. ``LD_LIBRARY_PATH`` from the image's environment;
  3. ``DT_RUNPATH`` of L only (not inherited);
  4. ``/etc/ld.so.cache`` (or, when the image has none, the ``ld.so.conf`` directories
     ldconfig would have cached), unless L was linked with ``-z nodeflib``;
  5. the loader's built-in system directories (read from the image's ``ld.so``).
musl: ``LD_LIBRARY_PATH``, then RUNPATH-or-RPATH of L and of every object up the load
chain, then ``/etc/ld-musl-ARCH.path`` or ``/lib:/usr/local/lib:/usr/lib``; the names
of libc's own parts (``libc.so``, ``libpthread.so.0``, ...) resolve to the loader.

A candidate is taken only if it is an ELF object with the loader's class, byte order
and machine (and a Linux-compatible OS ABI); others are skipped as ``ld.so`` skips
them.  Copies in ``glibc-hwcaps`` (and legacy hwcap) subdirectories are chosen by
``ld.so`` only on capable CPUs; they are reported as ``variants`` of the baseline copy
so that an image keeps both.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ocislim.elf.elfinfo import (
    EF_ARM_ABI_FLOAT_HARD,
    ELFOSABI_GNU,
    ELFOSABI_SYSV,
    EM_386,
    EM_AARCH64,
    EM_ARM,
    EM_X86_64,
    ElfCatalog,
    ElfInfo,
)
from ocislim.elf.ldcache import LdCache, read_ld_so_cache, read_ld_so_conf
from ocislim.elf.rootpath import RootFS, join
from ocislim.layers.pathwalk import lexical

EM_PPC, EM_PPC64, EM_S390, EM_MIPS, EM_RISCV, EM_LOONGARCH = 20, 21, 22, 8, 243, 258

# Debian-style multiarch triplets: (machine, class, byte order, hard-float) -> triplet.
_MULTIARCH: dict[tuple[int, int, str, bool], str] = {
    (EM_X86_64, 64, "little", False): "x86_64-linux-gnu",
    (EM_X86_64, 32, "little", False): "x86_64-linux-gnux32",
    (EM_386, 32, "little", False): "i386-linux-gnu",
    (EM_AARCH64, 64, "little", False): "aarch64-linux-gnu",
    (EM_ARM, 32, "little", True): "arm-linux-gnueabihf",
    (EM_ARM, 32, "little", False): "arm-linux-gnueabi",
    (EM_PPC64, 64, "little", False): "powerpc64le-linux-gnu",
    (EM_PPC64, 64, "big", False): "powerpc64-linux-gnu",
    (EM_PPC, 32, "big", False): "powerpc-linux-gnu",
    (EM_S390, 64, "big", False): "s390x-linux-gnu",
    (EM_MIPS, 64, "little", False): "mips64el-linux-gnuabi64",
    (EM_MIPS, 32, "little", False): "mipsel-linux-gnu",
    (EM_RISCV, 64, "little", False): "riscv64-linux-gnu",
    (EM_LOONGARCH, 64, "little", False): "loongarch64-linux-gnu",
}

# glibc's PT_INTERP names per ABI, used when a library (no PT_INTERP) is the main object.
_GLIBC_INTERPRETERS: dict[tuple[int, int, str, bool], tuple[str, ...]] = {
    (EM_X86_64, 64, "little", False): ("/lib64/ld-linux-x86-64.so.2",),
    (EM_X86_64, 32, "little", False): ("/libx32/ld-linux-x32.so.2",),
    (EM_386, 32, "little", False): ("/lib/ld-linux.so.2",),
    (EM_AARCH64, 64, "little", False): ("/lib/ld-linux-aarch64.so.1",),
    (EM_ARM, 32, "little", True): ("/lib/ld-linux-armhf.so.3",),
    (EM_ARM, 32, "little", False): ("/lib/ld-linux.so.3",),
    (EM_PPC64, 64, "little", False): ("/lib64/ld64.so.2",),
    (EM_PPC64, 64, "big", False): ("/lib64/ld64.so.1",),
    (EM_S390, 64, "big", False): ("/lib/ld64.so.1",),
    (EM_RISCV, 64, "little", False): ("/lib/ld-linux-riscv64-lp64d.so.1",),
}

# musl's name for the architecture, as in /lib/ld-musl-ARCH.so.1.
_MUSL_ARCH: dict[tuple[int, int, str, bool], str] = {
    (EM_X86_64, 64, "little", False): "x86_64",
    (EM_386, 32, "little", False): "i386",
    (EM_AARCH64, 64, "little", False): "aarch64",
    (EM_ARM, 32, "little", True): "armhf",
    (EM_ARM, 32, "little", False): "arm",
    (EM_PPC64, 64, "little", False): "powerpc64le",
    (EM_S390, 64, "big", False): "s390x",
    (EM_RISCV, 64, "little", False): "riscv64",
}

# What $PLATFORM can expand to.  The kernel's AT_PLATFORM, except that glibc on
# x86-64 replaces it with "haswell" or "xeon_phi" on CPUs with those features: the
# value depends on the machine the image runs on, so every candidate is searched.
_PLATFORMS: dict[int, tuple[str, ...]] = {
    EM_X86_64: ("x86_64", "haswell", "xeon_phi"),
    EM_386: ("i686",),
    EM_AARCH64: ("aarch64",),
    EM_ARM: ("v7l",),
    EM_S390: ("z13",),
    EM_PPC64: ("power9",),
}

# Upstream glibc's system directories when the loader binary does not tell us.
_UPSTREAM_64_DIRS = ("/lib64", "/usr/lib64")
_UPSTREAM_32_DIRS = ("/lib", "/usr/lib")
_MUSL_DEFAULT_PATH = ("/lib", "/usr/local/lib", "/usr/lib")

# libc parts that musl's loader answers itself (name prefixes after "lib").
_MUSL_RESERVED = ("c.", "pthread.", "rt.", "m.", "dl.", "util.", "xnet.")

# Legacy (pre-glibc-2.37) hwcap subdirectory names searched below each directory.
_LEGACY_HWCAP_DIRS = frozenset(
    {"tls", "haswell", "xeon_phi", "avx512_1", "x86_64", "i686", "i586", "sse2", "cmov"}
)

_SYSTEM_DIRS_RE = re.compile(rb"(?:/[A-Za-z0-9_.+-]+(?:/[A-Za-z0-9_.+-]+)*/\0)+")
_DST_RE = re.compile(r"\$(?:\{(ORIGIN|LIB|PLATFORM)\}|(ORIGIN|LIB|PLATFORM)(?![A-Za-z0-9_]))")


def abi_key(info: ElfInfo) -> tuple[int, int, str, bool]:
    hard_float = info.machine == EM_ARM and bool(info.e_flags & EF_ARM_ABI_FLOAT_HARD)
    return (info.machine, info.elf_class, info.byte_order, hard_float)


@dataclass(frozen=True)
class Loader:
    """The dynamic loader that runs an object and its built-in defaults."""

    path: str | None  # the interpreter as named (PT_INTERP or the ABI's usual name)
    canonical: str | None  # None when the image lacks it
    flavor: str  # "glibc" or "musl"
    system_dirs: tuple[str, ...]
    lib_token: str  # what $LIB expands to
    platforms: tuple[str, ...]  # what $PLATFORM may expand to (CPU-dependent)


@dataclass(frozen=True)
class SearchScope:
    """Per-request inputs of a lookup (computed from the load chain by the caller)."""

    compat: tuple[int, str, int]
    rpath: tuple[str, ...] = ()  # expanded, in search order (inherited chain)
    runpath: tuple[str, ...] = ()  # expanded, the requesting object's own
    nodeflib: bool = False
    origin_main: str = "/"  # for $ORIGIN in LD_LIBRARY_PATH


@dataclass(frozen=True)
class Found:
    """A library the loader would open for a requested name."""

    path: str  # as the loader names it: search directory + name
    canonical: str
    links: tuple[str, ...]  # symlinks followed from ``path`` to ``canonical``
    via: str  # rpath, LD_LIBRARY_PATH, runpath, ld.so.cache, ld.so.conf, default, path,
    # musl-path, loader
    variants: tuple[str, ...] = ()  # hwcap-specific copies ld.so may prefer


def is_compatible(candidate: ElfInfo, compat: tuple[int, str, int]) -> bool:
    """Would a loader for ``compat`` accept ``candidate`` as a dependency?"""
    return candidate.compat == compat and candidate.osabi in (ELFOSABI_SYSV, ELFOSABI_GNU)


class Resolver:
    """Library lookup inside one image; caches every directory listing and answer."""

    def __init__(
        self,
        rootfs: RootFS,
        catalog: ElfCatalog,
        env: Mapping[str, str],
        workdir: str = "/",
    ) -> None:
        self.rootfs = rootfs
        self.catalog = catalog
        self.env = dict(env)
        self.workdir = lexical(workdir or "/")
        self._ld_cache: LdCache | bool | None = False  # False: not read yet
        self._conf_dirs: tuple[str, ...] | None = None
        self._loaders: dict[tuple[str | None, tuple[int, int, str, bool]], Loader] = {}
        self._answers: dict[tuple[str, SearchScope, Loader], Found | None] = {}
        self._variants: dict[tuple[str, str, tuple[int, str, int]], tuple[str, ...]] = {}
        # Directories that differ only in the CPU-dependent $PLATFORM value.
        self._alternates: dict[str, tuple[str, ...]] = {}

    # -- the loader -------------------------------------------------------------------

    def loader_for(self, info: ElfInfo) -> Loader:
        """The loader that would run ``info`` as a program (its PT_INTERP or the usual one)."""
        key = abi_key(info)
        cache_key = (info.interpreter, key)
        if cache_key not in self._loaders:
            self._loaders[cache_key] = self._make_loader(info.interpreter, key, info)
        return self._loaders[cache_key]

    def _make_loader(
        self, interp: str | None, key: tuple[int, int, str, bool], info: ElfInfo
    ) -> Loader:
        candidates: list[str] = [interp] if interp else []
        if not interp:
            candidates += _GLIBC_INTERPRETERS.get(key, ())
            if key in _MUSL_ARCH:
                candidates.append(f"/lib/ld-musl-{_MUSL_ARCH[key]}.so.1")
        chosen = next((c for c in candidates if self.rootfs.is_file(c)), None)
        named = chosen or (candidates[0] if candidates else None)
        canonical = self.rootfs.resolve(chosen).path if chosen else None
        flavor = "musl" if named and "ld-musl-" in named.rsplit("/", 1)[-1] else "glibc"
        triplet = _MULTIARCH.get(key)
        multiarch = bool(triplet) and (
            self.rootfs.is_dir(f"/lib/{triplet}") or self.rootfs.is_dir(f"/usr/lib/{triplet}")
        )
        if flavor == "musl":
            dirs = self._musl_path(named or "", key)
        else:
            dirs = self._glibc_system_dirs(canonical)
            if not dirs:
                if multiarch:
                    dirs = (f"/lib/{triplet}", f"/usr/lib/{triplet}", "/lib", "/usr/lib")
                else:
                    dirs = _UPSTREAM_64_DIRS if info.elf_class == 64 else _UPSTREAM_32_DIRS
        # Debian builds glibc with slibdir /lib/TRIPLET, upstream with /lib64 or /lib.
        lib_token = f"lib/{triplet}" if multiarch else ("lib64" if info.elf_class == 64 else "lib")
        platforms = _PLATFORMS.get(info.machine, ())
        return Loader(named, canonical, flavor, dirs, lib_token, platforms)

    def _glibc_system_dirs(self, canonical: str | None) -> tuple[str, ...]:
        """The system directories compiled into the image's ``ld.so``."""
        if canonical is None:
            return ()
        data = self.rootfs.read_bytes(canonical)
        if not data:
            return ()
        single: tuple[str, ...] = ()
        for match in _SYSTEM_DIRS_RE.finditer(data):
            entries = [e.decode() for e in match.group().split(b"\0") if e]
            if not any("lib" in e for e in entries):
                continue
            dirs = tuple(lexical(e) for e in entries)
            if len(dirs) >= 2:
                return dirs
            single = single or dirs
        return single

    def _musl_path(self, interp: str, key: tuple[int, int, str, bool]) -> tuple[str, ...]:
        name = interp.rsplit("/", 1)[-1]
        arch = name[len("ld-musl-") : -len(".so.1")] if name.startswith("ld-musl-") else None
        arch = arch or _MUSL_ARCH.get(key, "")
        text = self.rootfs.read_text(f"/etc/ld-musl-{arch}.path")
        if text is None:
            return _MUSL_DEFAULT_PATH
        # musl splits the file on newlines and colons.
        parts = (p.strip() for p in re.split(r"[:\n]", text))
        return tuple(lexical(p) for p in parts if p.startswith("/"))

    # -- dynamic string tokens --------------------------------------------------------

    def expand(self, entries: Iterable[str], origin: str | None, loader: Loader) -> tuple[str, ...]:
        """Expand ``$ORIGIN``/``$LIB``/``$PLATFORM`` in search-path entries.

        Entries needing a token with no value are dropped (as ld.so drops them); an
        entry with ``$PLATFORM`` becomes one directory per possible platform name;
        relative or empty entries are taken from the working directory.
        """
        out: list[str] = []
        for entry in entries:
            group: list[str] = []
            for expanded in self._expand_one(entry, origin, loader):
                if not expanded.startswith("/"):
                    expanded = join(self.workdir, expanded)
                # Kept as spelled (ld.so opens "dir/name"); ".." is resolved in the tree.
                directory = expanded.rstrip("/") or "/"
                group.append(directory)
                if directory not in out:
                    out.append(directory)
            if len(group) > 1:
                for directory in group:
                    self._alternates[directory] = tuple(d for d in group if d != directory)
        return tuple(out)

    def _expand_one(self, entry: str, origin: str | None, loader: Loader) -> list[str]:
        if "$" not in entry:
            return [entry]
        glibc = loader.flavor == "glibc"
        platforms: tuple[str | None, ...] = (
            loader.platforms or (None,) if glibc and "PLATFORM" in entry else (None,)
        )
        out = []
        for platform in platforms:
            missing = False

            def value(m: re.Match[str], platform: str | None = platform) -> str:
                nonlocal missing
                token = m.group(1) or m.group(2)
                if token == "ORIGIN":
                    got = origin
                elif token == "LIB":
                    got = loader.lib_token if glibc else None
                else:
                    got = platform
                if got is None:
                    missing = True
                    return ""
                return got

            expanded = _DST_RE.sub(value, entry)
            if not missing:
                out.append(expanded)
        return out

    def ld_library_path(self, loader: Loader, origin_main: str) -> tuple[str, ...]:
        value = self.env.get("LD_LIBRARY_PATH")
        if not value:
            return ()
        return self.expand(re.split(r"[:;]", value), origin_main, loader)

    # -- the cache --------------------------------------------------------------------

    @property
    def ld_cache(self) -> LdCache | None:
        if self._ld_cache is False:
            self._ld_cache = read_ld_so_cache(self.rootfs)
        return self._ld_cache  # type: ignore[return-value]

    @property
    def conf_dirs(self) -> tuple[str, ...]:
        if self._conf_dirs is None:
            self._conf_dirs = read_ld_so_conf(self.rootfs)
        return self._conf_dirs

    # -- lookups ----------------------------------------------------------------------

    def find(self, name: str, scope: SearchScope, loader: Loader) -> Found | None:
        """Where ``loader`` finds ``name`` for a request described by ``scope``."""
        key = (name, scope, loader)
        if key not in self._answers:
            self._answers[key] = self._find(name, scope, loader)
        return self._answers[key]

    def _find(self, name: str, scope: SearchScope, loader: Loader) -> Found | None:
        if "/" in name:
            path = name if name.startswith("/") else join(self.workdir, name)
            return self._try_path(path, scope.compat, "path")
        if loader.flavor == "musl":
            return self._find_musl(name, scope, loader)
        steps: list[tuple[str, tuple[str, ...]]] = [
            ("rpath", scope.rpath),
            ("LD_LIBRARY_PATH", self.ld_library_path(loader, scope.origin_main)),
            ("runpath", scope.runpath),
        ]
        for via, dirs in steps:
            found = self._search_dirs(name, dirs, scope.compat, via, hwcaps=True)
            if found:
                return found
        if scope.nodeflib:
            return None
        cache = self.ld_cache
        if cache is not None:
            found = self._from_cache(cache, name, scope.compat)
            if found:
                return found
        elif self.conf_dirs:
            found = self._search_dirs(name, self.conf_dirs, scope.compat, "ld.so.conf", True)
            if found:
                return found
        return self._search_dirs(name, loader.system_dirs, scope.compat, "default", hwcaps=True)

    def _find_musl(self, name: str, scope: SearchScope, loader: Loader) -> Found | None:
        if name.startswith("lib") and name[3:].startswith(_MUSL_RESERVED):
            if loader.canonical and loader.path:
                res = self.rootfs.resolve(loader.path)
                return Found(loader.path, res.path, res.symlinks, "loader")
            return None
        for via, dirs in (
            ("LD_LIBRARY_PATH", self.ld_library_path(loader, scope.origin_main)),
            ("rpath", scope.rpath),
            ("musl-path", loader.system_dirs),
        ):
            found = self._search_dirs(name, dirs, scope.compat, via, hwcaps=False)
            if found:
                return found
        return None

    def _from_cache(self, cache: LdCache, name: str, compat: tuple[int, str, int]) -> Found | None:
        entries = cache.lookup(name)
        found: Found | None = None
        variants: list[str] = []
        for entry in entries:
            hit = self._try_path(entry.path, compat, "ld.so.cache")
            if hit is None:
                continue
            if entry.is_hwcap_variant:
                variants.append(entry.path)
            elif found is None:
                found = hit
        if found is None:
            return None
        directory = found.path.rsplit("/", 1)[0] or "/"
        extra = [v for v in self._dir_variants(directory, name, compat) if v not in variants]
        return Found(found.path, found.canonical, found.links, found.via, (*variants, *extra))

    def _search_dirs(
        self,
        name: str,
        dirs: Sequence[str],
        compat: tuple[int, str, int],
        via: str,
        hwcaps: bool,
    ) -> Found | None:
        for directory in dirs:
            variants = self._dir_variants(directory, name, compat) if hwcaps else ()
            if name not in self.rootfs.listdir(directory):
                if variants:
                    # Only a CPU-specific copy exists: ld.so takes it on capable CPUs.
                    hit = self._try_path(variants[-1], compat, via)
                    if hit:
                        return Found(hit.path, hit.canonical, hit.links, via, variants[:-1])
                continue
            hit = self._try_path(join(directory, name), compat, via)
            if hit:
                for other in self._alternates.get(directory, ()):
                    if name in self.rootfs.listdir(other) and self._try_path(
                        join(other, name), compat, via
                    ):
                        variants = (*variants, join(other, name))
                return Found(hit.path, hit.canonical, hit.links, via, variants)
        return None

    def _try_path(self, path: str, compat: tuple[int, str, int], via: str) -> Found | None:
        res = self.rootfs.resolve(path)
        if not res.exists:
            return None
        info = self.catalog.get(res.path)
        if info is None or not is_compatible(info, compat):
            return None
        return Found(path, res.path, res.symlinks, via)

    def _dir_variants(
        self, directory: str, name: str, compat: tuple[int, str, int]
    ) -> tuple[str, ...]:
        """CPU-specific copies of ``name`` below ``directory`` (most specific first)."""
        key = (directory, name, compat)
        cached = self._variants.get(key)
        if cached is not None:
            return cached
        found: list[str] = []
        listing = self.rootfs.listdir(directory)
        if "glibc-hwcaps" in listing:
            hw = join(directory, "glibc-hwcaps")
            for sub in sorted(self.rootfs.listdir(hw), reverse=True):
                candidate = join(join(hw, sub), name)
                if name in self.rootfs.listdir(join(hw, sub)) and self._try_path(
                    candidate, compat, ""
                ):
                    found.append(candidate)
        stack = [(directory, 0)]
        while stack:
            base, depth = stack.pop()
            for sub in sorted(_LEGACY_HWCAP_DIRS & self.rootfs.listdir(base)):
                sub_dir = join(base, sub)
                if not self.rootfs.is_dir(sub_dir):
                    continue
                if name in self.rootfs.listdir(sub_dir) and self._try_path(
                    join(sub_dir, name), compat, ""
                ):
                    found.append(join(sub_dir, name))
                if depth < 3:
                    stack.append((sub_dir, depth + 1))
        result = tuple(found)
        self._variants[key] = result
        return result
