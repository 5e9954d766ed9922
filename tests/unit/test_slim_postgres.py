"""postgres-server: a PostgreSQL server that ran keeps what it loads on demand."""

from __future__ import annotations

from ocislim.slim.keeprules import default_enabled
from ocislim.slim.plan import Planner
from ocislim.slim.runtimerules import RuntimeRules
from tests.synth import M
from tests.unit.slim_synth import reader, tree_from

LIB = "usr/lib/postgresql/15/lib"
SHARE = "usr/share/postgresql/15"
SERVER = [
    M("usr/lib/postgresql/15/bin/postgres", data=b"\x7fELF", mode=0o755),
    M("usr/lib/postgresql/15/bin/psql", data=b"\x7fELF", mode=0o755),
    M(f"{LIB}/plpgsql.so", data=b"\x7fELF"),
    M(f"{LIB}/pgcrypto.so", data=b"\x7fELF"),
    M(f"{LIB}/utf8_and_iso8859_1.so", data=b"\x7fELF"),
    M(f"{LIB}/llvmjit.so", data=b"\x7fELF"),
    M(f"{LIB}/bitcode/pgcrypto/pgp.bc", data=b"BC"),
    M(f"{SHARE}/extension/pgcrypto.control", data=b"default_version = '1.3'\n"),
    M(f"{SHARE}/extension/pgcrypto--1.3.sql", data=b"CREATE FUNCTION digest ..."),
    M(f"{SHARE}/tsearch_data/english.stop", data=b"the\na\n"),
    M(f"{SHARE}/timezonesets/Default", data=b"PST -28800\n"),
    M("usr/share/doc/postgresql-15/README", data=b"docs"),
]


def kept(touched: list[str], enabled: set[str] | None = None) -> set[str]:
    tree = tree_from(SERVER)
    rules = RuntimeRules(tree, default_enabled() if enabled is None else enabled, reader(SERVER))
    planner = Planner(tree)
    planner.add(rules.seeds(touched))
    return set(planner.kept_paths)


def test_a_server_that_ran_keeps_its_libdir_and_share_directory() -> None:
    result = kept(["/usr/lib/postgresql/15/bin/postgres"])
    assert {
        f"/{LIB}/pgcrypto.so",  # CREATE EXTENSION pgcrypto
        f"/{LIB}/utf8_and_iso8859_1.so",  # SET client_encoding
        f"/{SHARE}/extension/pgcrypto.control",
        f"/{SHARE}/tsearch_data/english.stop",  # to_tsvector('english', ...)
        f"/{SHARE}/timezonesets/Default",
    } <= result
    # The JIT provider and its bitcode are left out: libLLVM is 100 MB, and the
    # server runs queries uncompiled without them.
    assert f"/{LIB}/llvmjit.so" not in result
    assert f"/{LIB}/bitcode/pgcrypto/pgp.bc" not in result
    assert "/usr/share/doc/postgresql-15/README" not in result


def test_only_the_server_running_fires_the_rule() -> None:
    assert f"/{LIB}/pgcrypto.so" not in kept(["/usr/lib/postgresql/15/bin/psql"])
    assert kept(["/usr/lib/postgresql/15/bin/postgres"], set()) == set()
