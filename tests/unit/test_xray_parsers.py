"""Package database parsers, account parsers and the Dockerfile reconstruction."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ocislim.errors import OutputError
from ocislim.image.models import ImageConfig
from ocislim.inspect.contents import parse_group, parse_passwd
from ocislim.inspect.dockerfile import instruction_for, reconstruct
from ocislim.inspect.packages import (
    canonical_pip_name,
    parse_apk_installed,
    parse_dpkg_status,
    parse_package_json,
    parse_python_metadata,
)
from ocislim.inspect.scan import npm_root, wants_capture
from ocislim.outputs import write_text_atomic


def test_dpkg_status_counts_installed_only() -> None:
    text = (
        "Package: zlib1g\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1:1.2.13\n\n"
        "Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n\n"
        "Package: half\nStatus: install ok half-installed\nVersion: 2\n\n"
        "Package: held\nStatus: hold ok installed\nVersion: 3\n"
    )
    assert parse_dpkg_status(text) == {"zlib1g": "1:1.2.13", "held": "3"}


def test_dpkg_multiarch_names_get_arch() -> None:
    text = (
        "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.36\n\n"
        "Package: libc6\nStatus: install ok installed\nArchitecture: i386\nVersion: 2.36\n"
    )
    assert parse_dpkg_status(text) == {"libc6:amd64": "2.36", "libc6:i386": "2.36"}


def test_dpkg_status_d_records_without_status() -> None:
    text = "Package: base-files\nVersion: 12.4\nArchitecture: amd64\n"
    assert parse_dpkg_status(text) == {}
    assert parse_dpkg_status(text, require_status=False) == {"base-files": "12.4"}


def test_apk_installed() -> None:
    text = "C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\n\nP:busybox\nV:1.36.1-r5\n"
    assert parse_apk_installed(text) == {"musl": "1.2.4-r2", "busybox": "1.36.1-r5"}


def test_python_metadata() -> None:
    text = "Metadata-Version: 2.1\nName: Typing_Extensions\nVersion: 4.8\n"
    assert parse_python_metadata(text) == ("typing-extensions", "4.8")
    assert parse_python_metadata("Name: Foo.Bar\nVersion: 1\n\nName: body") == ("foo-bar", "1")
    assert parse_python_metadata("Version: 1\n") is None
    assert canonical_pip_name("Zope.Interface__x") == "zope-interface-x"


def test_package_json() -> None:
    assert parse_package_json(b'{"name": "@scope/x", "version": "2.0.1"}') == ("@scope/x", "2.0.1")
    assert parse_package_json(b'{"name": "nover"}') == ("nover", "")
    assert parse_package_json(b'{"version": "1"}') is None
    assert parse_package_json(b"[1, 2]") is None
    assert parse_package_json(b"{not json") is None


@pytest.mark.parametrize(
    ("path", "wanted"),
    [
        ("/etc/passwd", True),
        ("/etc/passwd-", False),
        ("/var/lib/dpkg/status", True),
        ("/var/lib/dpkg/status-old", False),
        ("/var/lib/dpkg/status.d/base", True),
        ("/usr/lib/python3/dist-packages/six-1.16.0.egg-info", True),
        ("/usr/lib/python3.11/site-packages/pip-23.dist-info/METADATA", True),
        ("/usr/lib/python3.11/site-packages/pip-23.dist-info/RECORD", False),
        ("/usr/lib/python3.11/site-packages/x.egg-info/PKG-INFO", True),
        ("/srv/METADATA", False),
        ("/app/node_modules/express/package.json", True),
        ("/app/node_modules/@types/node/package.json", True),
        ("/app/node_modules/express/lib/package.json", False),
        ("/app/node_modules/.package-lock.json", False),
        ("/app/package.json", False),
        ("/usr/share/nodejs/acorn/package.json", True),
        ("/usr/share/nodejs/@types/node/package.json", True),
        ("/usr/lib/x86_64-linux-gnu/nodejs/cjs-module-lexer/package.json", True),
        ("/usr/share/nodejs/acorn/dist/package.json", False),
        ("/srv/usr/share/nodejs/acorn/package.json", False),
        ("/usr/lib/python3/dist-packages/certifi/cacert.pem", True),
    ],
)
def test_capture_predicate(path: str, wanted: bool) -> None:
    assert wants_capture(path) is wanted


def test_npm_root() -> None:
    assert npm_root("/a/node_modules/b/node_modules/c/package.json") == "/a/node_modules"
    assert npm_root("/usr/share/nodejs/@types/node/package.json") == "/usr/share/nodejs"


def test_passwd_and_group() -> None:
    users = parse_passwd("root:x:0:0:root:/root:/bin/bash\nshort:x:1\n#c\nu:x:abc:1::/h:/bin/sh\n")
    assert [(u.name, u.uid, u.gid, u.home, u.shell) for u in users] == [
        ("root", 0, 0, "/root", "/bin/bash"),
        ("u", None, 1, "/h", "/bin/sh"),
    ]
    groups = parse_group("adm:x:4:syslog,alice\nempty:x:9:\nbroken\n")
    assert [(g.name, g.gid, g.members) for g in groups] == [
        ("adm", 4, ("syslog", "alice")),
        ("empty", 9, ()),
    ]


@pytest.mark.parametrize(
    ("created_by", "line"),
    [
        ('/bin/sh -c #(nop)  CMD ["bash"]', 'CMD ["bash"]'),
        ("/bin/sh -c #(nop) ADD file:5d6f in / ", "ADD file:5d6f /"),
        ("/bin/sh -c #(nop) COPY dir:ab12 in /app ", "COPY dir:ab12 /app"),
        ("/bin/sh -c #(nop)  ENV LANG=C.UTF-8", "ENV LANG=C.UTF-8"),
        ("/bin/sh -c #(nop)  EXPOSE 8080/tcp", "EXPOSE 8080/tcp"),
        ("/bin/sh -c apt-get update", "RUN apt-get update"),
        ("|2 A=1 B=2 /bin/sh -c make", "RUN make"),
        (
            "RUN /bin/sh -c apt-get update && apt-get install -y curl # buildkit",
            "RUN apt-get update \\\n    && apt-get install -y curl",
        ),
        ("RUN |1 V=3 /bin/sh -c echo $V # buildkit", "RUN echo $V"),
        ("COPY --chown=1:1 app /app # buildkit", "COPY --chown=1:1 app /app"),
        ("EXPOSE map[80/tcp:{} 443/tcp:{}]", "EXPOSE 80/tcp 443/tcp"),
        ("WORKDIR /srv", "WORKDIR /srv"),
        ("mmdebstrap --variant=minbase bookworm", "# mmdebstrap --variant=minbase bookworm"),
    ],
)
def test_instruction_for(created_by: str, line: str) -> None:
    assert instruction_for(created_by)[0] == line


def _config(history: list[dict[str, object]], **cfg: object) -> ImageConfig:
    return ImageConfig.from_json(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": cfg,
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": history,
        }
    )


def test_reconstruct_adds_config_the_history_lacks() -> None:
    config = _config(
        [
            {"created_by": "/bin/sh -c #(nop) ADD file:aa in / "},
            {"created_by": '/bin/sh -c #(nop)  CMD ["bash"]', "empty_layer": True},
            {"created_by": "RUN /bin/sh -c useradd app # buildkit", "comment": "make user"},
            {},
        ],
        Cmd=["bash"],
        User="app",
        Env=["PATH=/bin"],
        ExposedPorts={"80/tcp": {}},
    )
    text = reconstruct(config)
    body = [line for line in text.splitlines() if not line.startswith("# Re")]
    assert body == [
        "# Steps that copied files from a build context cannot be replayed as written.",
        "FROM scratch",
        "ADD file:aa /",
        'CMD ["bash"]',
        "# make user",
        "RUN useradd app",
        "# (a layer with no recorded command)",
        "# Settings from the image config that the history does not record:",
        "ENV PATH=/bin",
        "EXPOSE 80/tcp",
        "USER app",
    ]


def test_write_text_atomic(tmp_path: Path) -> None:
    target = tmp_path / "Dockerfile"
    target.write_text("old\n")
    write_text_atomic(target, "new\n")
    assert target.read_text() == "new\n"
    assert os.listdir(tmp_path) == ["Dockerfile"]  # no temporary file left
    with pytest.raises(OutputError, match="does not exist"):
        write_text_atomic(tmp_path / "missing" / "Dockerfile", "x")
    with pytest.raises(OutputError, match="is a directory"):
        write_text_atomic(tmp_path, "x")
