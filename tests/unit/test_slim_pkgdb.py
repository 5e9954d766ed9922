"""Package databases trimmed to the kept paths (slim/pkgdb.py) and replaced layer content."""

from __future__ import annotations

import io
import tarfile

from ocislim.layers.tree import FileTree
from ocislim.layers.writer import write_layer
from ocislim.slim import pkgdb
from ocislim.slim.plan import KeepPlan, KeptPath, Reason
from tests.synth import M
from tests.unit.slim_synth import tree_from

STATUS = b"""Package: hello
Status: install ok installed
Architecture: amd64
Version: 1.0-1
Conffiles:
 /etc/hello.conf 0123456789abcdef0123456789abcdef
 /etc/hello-extra.conf 0123456789abcdef0123456789abcdef
Description: greets
 at length

Package: gone
Status: install ok installed
Architecture: all
Version: 2

Package: whole
Status: install ok installed
Architecture: amd64
Version: 3

Package: old
Status: deinstall ok config-files
Architecture: all
Version: 0
"""

HELLO_LIST = (
    b"/.\n/usr\n/usr/bin\n/usr/bin/hello\n/usr/share/doc/hello/README\n"
    b"/etc/hello.conf\n/etc/hello-extra.conf\n"
)
HELLO_SUMS = b"aaaa  usr/bin/hello\nbbbb  usr/share/doc/hello/README\n"


def _members() -> list[M]:
    return [
        M("var/lib/dpkg/status", data=STATUS),
        M("var/lib/dpkg/info/format", data=b"1\n"),
        M("var/lib/dpkg/info/hello.list", data=HELLO_LIST),
        M("var/lib/dpkg/info/hello.md5sums", data=HELLO_SUMS),
        M("var/lib/dpkg/info/hello.postinst", data=b"#!/bin/sh\n", mode=0o755),
        M("var/lib/dpkg/info/gone.list", data=b"/usr/bin/gone\n"),
        M("var/lib/dpkg/info/whole:amd64.list", data=b"/usr\n/usr/lib\n/usr/lib/libwhole.so\n"),
        M("usr/bin/hello", data=b"hello", mode=0o755),
        M("usr/bin/gone", data=b"gone", mode=0o755),
        M("usr/lib/libwhole.so", data=b"whole"),
        M("usr/share/doc/hello/README", data=b"doc"),
        M("etc/hello.conf", data=b"conf"),
        M("etc/hello-extra.conf", data=b"extra"),
        M("usr/lib/python3/dist-packages/req/__init__.py", data=b"# req"),
        M("usr/lib/python3/dist-packages/req/api.py", data=b"# api"),
        M(
            "usr/lib/python3/dist-packages/req-1.0.dist-info/METADATA",
            data=b"Name: Req\nVersion: 1.0\n",
        ),
        M(
            "usr/lib/python3/dist-packages/req-1.0.dist-info/RECORD",
            data=b"req/__init__.py,sha256=x,5\nreq/api.py,sha256=y,5\nreq-1.0.dist-info/RECORD,,\n",
        ),
        M("app/node_modules/left/package.json", data=b'{"name": "left", "version": "1.2.3"}'),
        M("app/node_modules/left/index.js", data=b"module.exports = 1"),
        M("app/node_modules/unused/package.json", data=b'{"name": "unused", "version": "0.1.0"}'),
        M("app/node_modules/unused/index.js", data=b"1"),
    ]


def _account(tree: FileTree, kept: set[str], mode: str = "trim") -> pkgdb.Accounting:
    data = {"/" + m.name: m.data for m in _members() if m.kind == "file"}
    closed = set(kept)
    for path in list(kept):  # parents, as a plan has them
        while path != "/":
            path = path.rsplit("/", 1)[0] or "/"
            closed.add(path)
    return pkgdb.account(tree, closed, data.get, mode)


KEPT = {
    "/usr/bin/hello",
    "/etc/hello.conf",
    "/usr/lib/libwhole.so",
    "/usr/lib/python3/dist-packages/req/__init__.py",
    "/app/node_modules/left/index.js",
}


def test_dpkg_status_keeps_packages_with_a_kept_file_marked_partial() -> None:
    tree = tree_from(_members())
    acc = _account(tree, KEPT)
    states = {p.key: (p.state, p.kept, p.files) for p in acc.packages}
    assert states["dpkg:hello:amd64"] == ("partial", 2, 4)
    assert states["dpkg:gone:all"] == ("removed", 0, 1)
    assert states["dpkg:whole:amd64"] == ("whole", 1, 1)
    assert "dpkg:old:all" not in states  # not installed
    status = acc.replaced["/var/lib/dpkg/status"].decode()
    assert "Package: gone" not in status and "Package: old" not in status
    assert "Ocislim-Partial: kept 2 of 4 files" in status
    assert "/etc/hello.conf" in status and "/etc/hello-extra.conf" not in status
    assert " at length" in status  # continuation lines of other fields survive
    assert "Ocislim-Partial" not in status.split("Package: whole")[1]


def test_dpkg_list_and_md5sums_name_only_kept_paths() -> None:
    tree = tree_from(_members())
    acc = _account(tree, KEPT)
    listed = acc.replaced["/var/lib/dpkg/info/hello.list"].decode().splitlines()
    assert listed == ["/.", "/usr", "/usr/bin", "/usr/bin/hello", "/etc/hello.conf"]
    assert acc.replaced["/var/lib/dpkg/info/hello.md5sums"] == b"aaaa  usr/bin/hello\n"
    assert "/var/lib/dpkg/info/hello.postinst" not in acc.metadata
    assert "/var/lib/dpkg/info/gone.list" not in acc.metadata
    assert "/var/lib/dpkg/info/whole:amd64.list" in acc.metadata  # multi-arch name
    assert "/var/lib/dpkg/info/format" in acc.metadata
    assert acc.owners["/usr/bin/gone"] == "dpkg:gone:all"


def test_python_record_and_npm_manifest_of_kept_packages() -> None:
    tree = tree_from(_members())
    acc = _account(tree, KEPT)
    states = {p.key: (p.state, p.version) for p in acc.packages}
    assert states["pip:req"] == ("partial", "1.0")
    assert states["npm:left"] == ("whole", "1.2.3")
    assert states["npm:unused"] == ("removed", "0.1.0")
    record = acc.replaced["/usr/lib/python3/dist-packages/req-1.0.dist-info/RECORD"].decode()
    assert "req/api.py" not in record and "req/__init__.py" in record
    assert "/usr/lib/python3/dist-packages/req-1.0.dist-info/METADATA" in acc.metadata
    assert "/app/node_modules/left/package.json" in acc.metadata
    assert "/app/node_modules/unused/package.json" not in acc.metadata


def test_keep_adds_whole_databases_and_drop_adds_nothing() -> None:
    tree = tree_from(_members())
    keep = _account(tree, KEPT, "keep")
    assert not keep.replaced
    assert "/var/lib/dpkg/info/gone.list" in keep.metadata
    drop = _account(tree, KEPT, "drop")
    assert not drop.metadata and not drop.replaced
    assert {p.key for p in drop.packages} == {p.key for p in keep.packages}


def test_with_metadata_adds_reasons_and_parents() -> None:
    tree = tree_from(_members())
    acc = _account(tree, KEPT)
    plan = KeepPlan(
        tuple(KeptPath(p, "file", 1, (Reason("rule", flag="--x"),)) for p in ("/", "/usr"))
    )
    full = pkgdb.with_metadata(plan, tree, acc)
    by_path = {k.path: k for k in full.kept}
    status = by_path["/var/lib/dpkg/status"]
    assert status.reasons[0].source == "package-db"
    assert status.size == len(acc.replaced["/var/lib/dpkg/status"])
    assert by_path["/var/lib/dpkg"].reasons[0].source == "parent"
    assert [k.path for k in full.kept] == sorted(by_path)


def test_removed_list_names_owners_and_sums_directories() -> None:
    tree = tree_from(_members())
    acc = _account(tree, KEPT)
    removed = pkgdb.removed(tree, {"/", "/usr", "/usr/bin", "/usr/bin/hello"}, acc.owners)
    by_path = {r["path"]: r for r in removed}
    assert by_path["/usr/bin/gone"]["package"] == "dpkg:gone:all"
    assert by_path["/usr/bin/gone"]["size"] == 4
    assert "/usr/bin/hello" not in by_path
    dirs = {d["path"]: d for d in pkgdb.removed_dirs(removed)}
    assert dirs["/usr/bin"]["paths"] == 1


def test_replaced_content_keeps_the_header_and_is_deterministic() -> None:
    tree = tree_from(_members())
    entries = [e for e in tree.walk() if e.path.startswith("/usr/bin")]
    blobs = {}

    def open_data(ref: object) -> io.BytesIO:
        return io.BytesIO(b"hello" if getattr(ref, "size", 0) == 5 else b"gone")

    outs = []
    for _ in range(2):
        out = io.BytesIO()
        write_layer(entries, open_data, out, "none", replaced={"/usr/bin/hello": b"new!!!!"})
        outs.append(out.getvalue())
    assert outs[0] == outs[1]
    with tarfile.open(fileobj=io.BytesIO(outs[0])) as tar:
        for info in tar:
            blobs[info.name] = (info.mode, tar.extractfile(info).read() if info.isfile() else b"")  # type: ignore[union-attr]
    assert blobs["usr/bin/hello"] == (0o755, b"new!!!!")
    assert blobs["usr/bin/gone"] == (0o755, b"gone")


APK_DB = b"""C:Q1abc=
P:musl
V:1.2.4-r2
A:x86_64
F:lib
R:ld-musl-x86_64.so.1
a:0:0:755
Z:Q1xyz=
R:libc.musl-x86_64.so.1
a:0:0:777
Z:Q1lnk=

P:busybox
V:1.36.1-r5
A:x86_64
F:bin
R:busybox
Z:Q1bb=
"""


def test_apk_installed_keeps_kept_packages_with_trimmed_files() -> None:
    members = [
        M("lib/apk/db/installed", data=APK_DB),
        M("lib/ld-musl-x86_64.so.1", data=b"ELF", mode=0o755),
        M("lib/libc.musl-x86_64.so.1", "symlink", link="ld-musl-x86_64.so.1"),
        M("bin/busybox", data=b"ELF", mode=0o755),
    ]
    tree = tree_from(members)
    data = {"/" + m.name: m.data for m in members if m.kind == "file"}
    acc = pkgdb.account(tree, {"/", "/lib", "/lib/ld-musl-x86_64.so.1"}, data.get)
    states = {p.key: (p.state, p.kept, p.files) for p in acc.packages}
    assert states == {"apk:musl:x86_64": ("partial", 1, 2), "apk:busybox:x86_64": ("removed", 0, 1)}
    text = acc.replaced["/lib/apk/db/installed"].decode()
    assert "P:busybox" not in text
    assert "R:ld-musl-x86_64.so.1\na:0:0:755\nZ:Q1xyz=" in text
    assert "libc.musl" not in text and "Q1lnk=" not in text
    assert acc.owners["/bin/busybox"] == "apk:busybox:x86_64"


def test_printable_paths_stay_one_a_line() -> None:
    assert pkgdb.printable("/usr/bin/ls") == "/usr/bin/ls"
    assert pkgdb.printable("/a\nb") == "/a\\nb"
    assert pkgdb.printable(b"/caf\xe9".decode("utf-8", "surrogateescape")) == "/caf\\xe9"
