"""lua-modules: a Lua that ran keeps the modules require may load by name later."""

from __future__ import annotations

from ocislim.slim.keeprules import default_enabled
from ocislim.slim.plan import Planner
from ocislim.slim.runtimerules import RuntimeRules
from tests.synth import M
from tests.unit.slim_synth import reader, tree_from

CPATH = "usr/lib/x86_64-linux-gnu/lua/5.4"
LPATH = "usr/share/lua/5.4"
IMAGE = [
    M("usr/bin/lua5.4", data=b"\x7fELF", mode=0o755),
    M("usr/lib/x86_64-linux-gnu/liblua5.4.so.0", data=b"\x7fELF"),
    M(f"{CPATH}/cjson.so", data=b"\x7fELF"),
    M(f"{CPATH}/lpeg.so", data=b"\x7fELF"),
    M(f"{CPATH}/posix/unistd.so", data=b"\x7fELF"),
    M(f"{LPATH}/socket.lua", data=b"local socket = require 'socket.core'"),
    M(f"{LPATH}/re.lua", data=b"return {}"),
    M("usr/share/lua/5.1/old.lua", data=b"return {}"),  # another version's tree
    M("usr/share/doc/lua5.4/README", data=b"docs"),
    M("bin/sh", data=b"\x7fELF", mode=0o755),
]


def kept(touched: list[str], enabled: set[str] | None = None) -> set[str]:
    tree = tree_from(IMAGE)
    rules = RuntimeRules(tree, default_enabled() if enabled is None else enabled, reader(IMAGE))
    planner = Planner(tree)
    planner.add(rules.seeds(touched))
    return set(planner.kept_paths)


def test_a_lua_that_ran_keeps_its_module_directories_and_the_shell() -> None:
    result = kept(["/usr/bin/lua5.4", f"/{CPATH}/cjson.so"])
    assert {f"/{CPATH}/lpeg.so", f"/{CPATH}/posix/unistd.so", f"/{LPATH}/socket.lua",
            "/bin/sh"} <= result  # fmt: skip
    assert "/usr/share/doc/lua5.4/README" not in result


def test_lua_modules_need_lua_to_run_and_can_be_switched_off() -> None:
    assert not any("/lua/" in p for p in kept(["/usr/bin/perl"]))
    off = default_enabled() - {"lua-modules"}
    assert f"/{CPATH}/lpeg.so" not in kept(["/usr/bin/lua5.4"], off)
