"""config-named-paths: what a configuration file the run read names is kept."""

from __future__ import annotations

import pytest

from ocislim.slim.confpaths import MAX_DIR_ENTRIES, ConfigPaths, is_config_file, named_paths
from ocislim.slim.plan import Planner
from tests.synth import M
from tests.unit.slim_synth import reader, tree_from

LIGHTTPD = """\
# server.document-root = "/srv/old"
server.document-root = "/srv/www"
alias.url = ( "/docs/" => "/opt/docs/" )   # the URL path /docs/ is not in the image
server.errorfile-prefix = "/etc/lighttpd/errors/status-"
server.upload-dirs = ( "/var/cache/lighttpd/uploads", "/usr/share", "/usr/lib/x86_64-linux-gnu" )
include "/etc/lighttpd/conf-mime.conf"
url = "http://example.com/srv/www-not-a-path"
"""
MEMBERS = [
    M("etc/lighttpd/site.conf", data=LIGHTTPD.encode()),
    M("etc/lighttpd/conf-mime.conf", data=b'mimetype.assign = ( ".css" => "text/css" )\n'),
    M("etc/lighttpd/errors/status-404.html", data=b"<p>missing</p>"),
    M("srv/www/index.html", data=b"<h1>"),
    M("srv/www/sub/page.html", data=b"<p>"),
    M("srv/old/index.html", data=b"old"),
    M("opt/docs/guide.txt", data=b"guide"),
    M("opt/other/x.txt", data=b"other"),
    M("var/cache/lighttpd/uploads", "dir"),
    M("usr/share/big/file", data=b"shared"),
    M("usr/lib/x86_64-linux-gnu/libz.so.1", data=b"\x7fELF"),
    M("etc/ssl/openssl.cnf", data=b"dir = /opt/other\n"),
    M("app/notes.txt", data=b"root = /opt/other\n"),
]


def kept(
    touched: list[str], enabled: frozenset[str] = frozenset({"config-named-paths"})
) -> set[str]:
    tree = tree_from(MEMBERS)
    rules = ConfigPaths(tree, reader(MEMBERS), enabled)
    planner = Planner(tree)
    planner.add(rules.seeds(touched))
    return set(planner.kept_paths)


def test_the_site_a_server_configuration_names_is_kept_whole() -> None:
    result = kept(["/etc/lighttpd/site.conf"])
    assert {
        "/srv/www/index.html",
        "/srv/www/sub/page.html",  # a page the probe never asked for
        "/opt/docs/guide.txt",  # an alias
        "/var/cache/lighttpd/uploads",
        "/etc/lighttpd/conf-mime.conf",
    } <= result
    assert "/srv/old/index.html" not in result  # named in a comment only
    assert "/usr/share/big/file" not in result  # a system directory is never kept whole
    assert "/usr/lib/x86_64-linux-gnu/libz.so.1" not in result  # nor a root of packages
    assert "/opt/other/x.txt" not in result


def test_only_configuration_files_are_read_and_the_rule_can_be_switched_off() -> None:
    assert "/opt/other/x.txt" not in kept(["/etc/ssl/openssl.cnf"])  # the system's own
    assert "/opt/other/x.txt" not in kept(["/app/notes.txt"])  # not a configuration file
    assert kept(["/etc/lighttpd/site.conf"], frozenset()) == set()


@pytest.mark.parametrize(
    ("path", "config"),
    [
        ("/etc/nginx/nginx.conf", True),
        ("/etc/caddy/Caddyfile", True),
        ("/usr/local/etc/php/php.ini", True),
        ("/app/config.yaml", True),
        ("/etc/passwd", False),
        ("/etc/ssl/openssl.cnf", False),
        ("/etc/ld.so.conf.d/libc.conf", False),
        ("/app/main.py", False),
    ],
)
def test_what_counts_as_a_configuration_file(path: str, config: bool) -> None:
    assert is_config_file(path) is config


def test_named_paths_skip_comments_and_url_paths() -> None:
    text = "# /a/b\n; /c\n// /d\nroot /srv/site/;\nurl http://h/x/y\nfile=/etc/x.conf\n"
    assert named_paths(text) == ["/srv/site", "/etc/x.conf"]


def test_a_huge_named_directory_is_not_kept_whole() -> None:
    members = [
        M("etc/app/app.conf", data=b"data_dir = /data\n"),
        *(M(f"data/f{i}", data=b"") for i in range(MAX_DIR_ENTRIES + 1)),
    ]
    tree = tree_from(members)
    seeds = ConfigPaths(tree, reader(members), {"config-named-paths"}).seeds(["/etc/app/app.conf"])
    assert seeds == []
