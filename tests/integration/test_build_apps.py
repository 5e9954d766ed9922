"""Real applications slimmed with the defaults and one natural probe: every mode still works.

Each fixture (``fixtures/build_images.py``: a Flask site, an express site, nginx, a
Perl program on Debian's CPAN modules, git, a Java program on Debian's JRE, Tomcat
with a JSP, a PostgreSQL server, ImageMagick, graphviz, a shell tool on rotated logs,
a Sinatra site, a PHP site on php's built-in server, a static Go binary, an Apache site
with CGI scripts, a Python command-line tool on the standard library, a tool run as a
user that keeps its state in its home, a tool whose modes need the helpers and
libraries programs load by name) is built with
``ocislim build`` and the probe a user would give (the HTTP probe of the exposed port,
an ``--exec`` of a client, or the image's own command), then EVERY mode, not only the
probed one, runs with podman on the original and on the slim image, and must give the
same exit code and output.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.images import fixture_image
from tests.integration.build_support import Podman, build, podman_fixture
from tests.tools import require_tool

pytestmark = [pytest.mark.integration, pytest.mark.sandbox]
__all__ = ["podman_fixture"]

Result = tuple[int, str]
Mode = Callable[[Podman, str], Result]


def run_mode(*args: str, entrypoint: str | None = None) -> Mode:
    """A mode that runs the image with ``args`` and gives (exit code, stdout)."""

    def mode(podman: Podman, tag: str) -> Result:
        done = podman.run(tag, *args, entrypoint=entrypoint)
        return done.returncode, done.stdout + _nginx_stderr(done.stderr)

    return mode


def _nginx_stderr(stderr: str) -> str:
    # nginx -t reports on stderr; other programs' stderr is not compared.
    return "".join(line + "\n" for line in stderr.splitlines() if "nginx:" in line)


_FETCH = """\
import sys, urllib.request, urllib.error
url = "http://127.0.0.1:%s" + sys.argv[1]
req = urllib.request.Request(url, headers={"Accept-Encoding": sys.argv[2]})
try:
    r = urllib.request.urlopen(req, timeout=10)
except urllib.error.HTTPError as e:
    r = e
body = r.read()
print(r.status, r.headers.get("Content-Type"), r.headers.get("Content-Encoding"), len(body))
if r.headers.get("Content-Encoding") != "gzip":
    print(body.decode(errors="replace"))
"""


def serve_mode(port: int, path: str, encoding: str = "identity") -> Mode:
    """A mode that starts the image's server (no network) and fetches ``path`` from inside
    its network namespace with the host's python3."""

    def mode(podman: Podman, tag: str) -> Result:
        started = subprocess.run(
            [*podman.cmd, "run", "-d", "--rm", "--runtime", "runc", "--network", "none", tag],
            capture_output=True,
            text=True,
            check=True,
        )
        name = started.stdout.strip()
        try:
            pid = subprocess.run(
                [*podman.cmd, "inspect", "-f", "{{.State.Pid}}", name],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            script = _FETCH % port
            for _ in range(100):  # until the server listens
                done = subprocess.run(
                    ["nsenter", "-t", pid, "-n", "python3", "-c", script, path, encoding],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if done.returncode == 0:
                    return 0, done.stdout
                time.sleep(0.2)
            return done.returncode, done.stderr.splitlines()[-1] if done.stderr else ""
        finally:
            subprocess.run([*podman.cmd, "rm", "-f", "-t", "1", name], capture_output=True)

    return mode


def sql_mode(sql: str) -> Mode:
    """A mode that starts the PostgreSQL server as user postgres and runs ``sql``."""

    def mode(podman: Podman, tag: str) -> Result:
        done = podman.run(tag, sql, entrypoint="/app/query.sh", options=("--user", "postgres"))
        return done.returncode, done.stdout

    return mode


@dataclass(frozen=True)
class App:
    image: str
    build_args: tuple[str, ...]
    modes: dict[str, Mode]


def _get(path: str) -> Mode:
    return run_mode("python3", "/app/app.py", "get", path)


def _node_get(path: str) -> Mode:
    return run_mode("node", "/app/server.js", "get", path)


def _ruby_get(path: str) -> Mode:
    return run_mode("ruby", "/app/app.rb", "get", path)


def _php_get(path: str) -> Mode:
    return run_mode("php", "/app/app.php", "get", path)


# A format, then the layout program (each a link to dot) when not dot itself.
GRAPHVIZ_MODES = (
    "svg", "png", "pdf", "ps", "gif", "plain", "gvpr",
    "svg neato", "plain circo", "png fdp", "plain sfdp",
)  # fmt: skip
# Each rotation of the log is read by another decompressor, which xzgrep picks.
LOGS_MODES = (
    "search app.log ERROR", "search app.log.1.gz ERROR", "search app.log.2.xz ERROR",
    "search app.log.3.bz2 ERROR", "search app.log.4.zst ERROR", "report app.log",
    "digest app.log.1.gz", "lines app.log",
)  # fmt: skip
PYCLI_MODES = (
    "csv", "email", "codecs", "unicode", "db", "tz", "hash", "archive", "tools", "shell", "os",
    "term", "ctypes", "users",
)  # fmt: skip

APPS = {
    "flask": App(
        "flask-app",
        (),  # the HTTP probe of the exposed port 8080 (GET /)
        {
            "serve /": serve_mode(8080, "/"),
            "template /": _get("/"),
            "static": _get("/static/style.css"),
            "static md": _get("/static/notes.md"),
            "db": _get("/db"),
            "time": _get("/time"),
            "hash": _get("/hash"),
            "tmp": _get("/tmp"),
            "yaml": _get("/yaml"),
        },
    ),
    "express": App(
        "express-app",
        (),  # the HTTP probe of port 3000
        {
            "serve /": serve_mode(3000, "/"),
            "view /": _node_get("/"),
            "static": _node_get("/static/style.css"),
            "json": _node_get("/json"),
            "hash": _node_get("/hash"),
            "time": _node_get("/time"),
            "yaml": _node_get("/yaml"),
        },
    ),
    "nginx": App(
        "nginx-site",
        (),  # the HTTP probe of port 80
        {
            "index": serve_mode(80, "/"),
            "css": serve_mode(80, "/style.css"),
            "sub page": serve_mode(80, "/sub/page.html"),
            "404": serve_mode(80, "/missing"),
            "gzip": serve_mode(80, "/style.css", "gzip"),
            "config test": run_mode("nginx", "-t"),
        },
    ),
    "perl": App(
        "perl-tool",
        (),  # the image's command (json) runs to its end
        {
            m: run_mode(m)
            for m in ("json", "encode", "time", "digest", "gzip", "dumper", "datetime")
        },
    ),
    "java": App(
        "java-app",
        (),  # the image's command (hello) runs to its end
        {
            m: run_mode(m)
            for m in ("hello", "time", "digest", "dns", "gzip", "spawn", "props", "font")
        },
    ),
    "tomcat": App(
        "tomcat-site",
        (),  # the HTTP probe of port 8080 (GET /: Debian's default page)
        {
            "index": serve_mode(8080, "/"),
            "css": serve_mode(8080, "/style.css"),
            "jsp": serve_mode(8080, "/hello.jsp"),
            "second app": serve_mode(8080, "/api/data.json"),
            "404": serve_mode(8080, "/missing"),
        },
    ),
    "imagemagick": App(
        "imagemagick-tool",
        (),  # the image's command (png) runs to its end
        {m: run_mode(m) for m in ("png", "jpg", "gif", "bmp", "tiff", "webp", "label")},
    ),
    "graphviz": App(
        "graphviz-tool",
        (),  # the image's command (dot -Tsvg) runs to its end
        {m: run_mode(*m.split()) for m in GRAPHVIZ_MODES},
    ),
    "logs": App(
        "logs-tool",
        (),  # the image's command (search app.log.1.gz) runs to its end
        {m: run_mode(*m.split()) for m in LOGS_MODES},
    ),
    "helpers": App(
        "helpers-tool",
        (),  # the image's command (gpg --version) runs to its end
        {m: run_mode(m) for m in ("version", "sym", "genkey", "paginate", "diff3", "db", "kind")},
    ),
    "user": App(
        "user-tool",
        (),  # the image's command (hello) runs to its end, as the user app
        {m: run_mode(m) for m in ("hello", "whoami", "cache", "config", "db")},
    ),
    "postgres": App(
        "postgres-db",
        ("--user", "postgres", "--exec", "/app/ready.sh"),  # the server answers select 1
        {
            "select": sql_mode("select 1 + 1"),
            "plpgsql": sql_mode(
                "create function f() returns int language plpgsql as "
                "'begin return 7; end'; select f()"
            ),
            "time zone": sql_mode(
                "set timezone = 'Asia/Tokyo'; select timestamptz '2020-01-01 00:00:00+00'"
            ),
            "zone abbreviation": sql_mode("select timestamptz '2020-01-01 12:00 PST'"),
            "pgcrypto": sql_mode(
                "create extension pgcrypto; select encode(digest('abc', 'sha256'), 'hex')"
            ),
            "hstore": sql_mode("create extension hstore; select 'a=>1'::hstore"),
            "text search": sql_mode("select to_tsvector('english', 'The quick foxes jumped')"),
            "encoding": sql_mode("set client_encoding = 'LATIN1'; select 'caf' || chr(233)"),
            "copy": sql_mode(
                "copy (select generate_series(1, 3)) to '/tmp/out.csv'; "
                "select pg_read_file('/tmp/out.csv')"
            ),
        },
    ),
    "sinatra": App(
        "sinatra-app",
        (),  # the HTTP probe of port 4567
        {
            "serve /": serve_mode(4567, "/"),
            "view /": _ruby_get("/"),
            "static": _ruby_get("/style.css"),
            "json": _ruby_get("/json"),
            "time": _ruby_get("/time"),
            "tz gem": _ruby_get("/tz"),
            "digest": _ruby_get("/digest"),
            "zlib": _ruby_get("/zlib"),
        },
    ),
    "php": App(
        "php-app",
        (),  # the HTTP probe of port 8000
        {
            "serve /": serve_mode(8000, "/"),
            "static": serve_mode(8000, "/style.css"),
            "template /": _php_get("/"),
            "json": _php_get("/json"),
            "db": _php_get("/db"),
            "mbstring": _php_get("/mb"),
            "time": _php_get("/time"),
            "hash": _php_get("/hash"),
        },
    ),
    "go": App(
        "go-static",
        (),  # the HTTP probe of port 8090
        {
            "serve /": serve_mode(8090, "/"),
            **{m: run_mode(m) for m in ("time", "digest", "exec", "dns", "tls")},
        },
    ),
    "apache": App(
        "apache-site",
        (),  # the HTTP probe of port 80
        {
            "index": serve_mode(80, "/"),
            "css": serve_mode(80, "/style.css"),
            "gzip": serve_mode(80, "/style.css", "gzip"),
            "404": serve_mode(80, "/missing"),
            "mime": serve_mode(80, "/logo.svg"),
            "rewrite": serve_mode(80, "/old"),
            "alias": serve_mode(80, "/docs/guide.txt"),
            "listing": serve_mode(80, "/docs/"),
            "icons": serve_mode(80, "/icons/folder.gif"),
            "cgi sh": serve_mode(80, "/cgi-bin/hello.sh?abc"),
            "cgi perl": serve_mode(80, "/cgi-bin/info.pl"),
            "modules": run_mode("apache2ctl", "-M"),
        },
    ),
    "pycli": App(
        "python-cli",
        (),  # the image's command (csv) runs to its end
        {m: run_mode(m) for m in PYCLI_MODES},
    ),
    "git": App(
        "git-tool",
        (),  # the image's command (init) runs to its end
        {m: run_mode(m) for m in ("init", "commit", "clone", "diff", "archive")},
    ),
}


@pytest.mark.parametrize("app_name", sorted(APPS))
def test_every_mode_works_after_a_default_build(
    app_name: str, tmp_path: Path, podman: Podman
) -> None:
    require_tool("nsenter")
    app = APPS[app_name]
    source = fixture_image(app.image)
    built = build(source, tmp_path, *app.build_args)
    assert built.report["verification"]["passed"] is True
    original = f"localhost/ocislim/{app.image}:latest"
    podman.load(source, original)
    slim = f"localhost/ocislim-test/{app.image}-slim:latest"
    podman.load(built.image, slim)
    broken = {}
    for name, mode in app.modes.items():
        want = mode(podman, original)
        assert want[0] == 0, f"{name} fails on the original image: {want}"
        got = mode(podman, slim)
        if got != want:
            broken[name] = (want, got)
    assert not broken, f"{len(broken)}/{len(app.modes)} modes differ after slim: {broken}"
