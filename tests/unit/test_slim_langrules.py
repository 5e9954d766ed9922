"""Language-runtime rules on fabricated Python and Node layouts."""

from __future__ import annotations

from ocislim.slim.langrules import (
    LANG_RULES,
    LangRules,
    default_enabled,
    node_dependencies,
    node_package_dir,
    node_requires,
    python_imports,
)
from ocislim.slim.plan import Planner, Reason, Seed
from tests.synth import M
from tests.unit.slim_synth import python_tree, reader, tree_from

LIB = "/usr/lib/python3.11"
SITE = "/usr/lib/python3/dist-packages"
TRACE = Reason("trace", process="python3 app.py", access=("read",))


def kept_after(members: list[M], touched: list[str], enabled: set[str] | None = None) -> set[str]:
    tree = tree_from(members)
    rules = LangRules(tree, reader(members), enabled)
    planner = Planner(tree)
    planner.add([Seed(p, TRACE) for p in touched])
    planner.add(rules.seeds(touched))
    return set(planner.kept_paths)


def test_rules_are_data_with_defaults() -> None:
    names = [r.name for r in LANG_RULES]
    assert names == [
        "python-stdlib",
        "python-stdlib-extras",
        "python-distribution",
        "python-tests",
        "python-ctypes-libraries",
        "node-package",
    ]
    assert default_enabled() == {
        "python-stdlib",
        "python-distribution",
        "python-ctypes-libraries",
        "node-package",
    }
    assert all(r.description for r in LANG_RULES)


def test_a_kept_distribution_leaves_its_tests_out_unless_python_tests_is_on() -> None:
    site = "usr/lib/python3/dist-packages"
    members = [
        *python_tree(),
        M(f"{site}/requests/tests/__init__.py", data=b"import sympy\n"),
        M(f"{site}/yaml/adapters/tests/test_a.py", data=b"# test"),
        M(f"{site}/yaml/testing.py", data=b"# a runtime helper"),
        M(f"{site}/yaml/tests/test_y.py", data=b"# test"),
        M(f"{site}/sympy/__init__.py", data=b"# sympy"),
    ]
    touched = [f"/{site}/requests/api.py", f"/{site}/yaml/__init__.py"]
    on = {"python-distribution", "python-tests"}
    default = kept_after(members, touched, {"python-distribution"})
    assert f"/{site}/yaml/testing.py" in default
    assert not any("/tests/" in p or p.endswith("/tests") for p in default)
    with_tests = kept_after(members, touched, on)
    assert {f"/{site}/yaml/tests/test_y.py", f"/{site}/yaml/adapters/tests/test_a.py"} <= (
        with_tests
    )
    # What only a test imports is not read as the program's import.
    script = [M("app/app.py", data=b"import requests\n")]
    rules = LangRules(
        tree_from([*members, *script]), reader([*members, *script]), {"python-distribution"}
    )
    assert not any("sympy" in s.path for s in rules.imported(["/app/app.py"]))
    rules = LangRules(tree_from([*members, *script]), reader([*members, *script]), on)
    assert any("sympy" in s.path for s in rules.imported(["/app/app.py"]))


def test_touching_the_stdlib_keeps_it_without_caches_extras_or_site_packages() -> None:
    kept = kept_after(python_tree(), [f"{LIB}/json/__init__.py"])
    assert {f"{LIB}/os.py", f"{LIB}/json/decoder.py"} <= kept
    assert f"{LIB}/lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so" in kept
    for left_out in (
        f"{LIB}/json/__pycache__/decoder.cpython-311.pyc",
        f"{LIB}/__pycache__/os.cpython-311.pyc",
        f"{LIB}/test/test_os.py",
        f"{LIB}/idlelib/idle.py",
        f"{LIB}/config-3.11-x86_64-linux-gnu/libpython3.11.a",
        f"{LIB}/site-packages/README.txt",
    ):
        assert left_out not in kept, left_out


def test_a_traced_bytecode_cache_is_still_kept() -> None:
    pyc = f"{LIB}/json/__pycache__/__init__.cpython-311.pyc"
    kept = kept_after(python_tree(), [pyc])
    assert pyc in kept
    assert f"{LIB}/json/__pycache__/decoder.cpython-311.pyc" not in kept
    assert f"{LIB}/os.py" in kept


def test_extras_only_on_request_and_every_rule_can_be_switched_off() -> None:
    extras = kept_after(python_tree(), [f"{LIB}/os.py"], {"python-stdlib", "python-stdlib-extras"})
    assert f"{LIB}/test/test_os.py" in extras
    assert f"{LIB}/config-3.11-x86_64-linux-gnu/libpython3.11.a" in extras
    assert f"{LIB}/__pycache__/os.cpython-311.pyc" not in extras
    off = kept_after(python_tree(), [f"{LIB}/os.py"], set())
    assert f"{LIB}/json/decoder.py" not in off


def test_the_interpreter_itself_keeps_its_own_standard_library() -> None:
    # A Python another rule counts as run (a CGI script's interpreter) touched no stdlib file.
    members = [
        *python_tree(),
        M("usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0", data=b"\x7fELF"),
        M("usr/local/bin/python3", data=b"\x7fELF", mode=0o755),
        M("usr/local/lib/python3.12/os.py", data=b"# os"),
        M("usr/local/lib/python3.12/json/__init__.py", data=b"# json"),
        M("usr/local/lib/python3.9/other.py", data=b"# no landmark"),
        M("opt/tool/python3.11", data=b"\x7fELF", mode=0o755),
    ]
    for interpreter in ("/usr/bin/python3.11", "/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0"):
        kept = kept_after(members, [interpreter])
        assert {f"{LIB}/os.py", f"{LIB}/json/decoder.py"} <= kept, interpreter
        assert f"{LIB}/json/__pycache__/decoder.cpython-311.pyc" not in kept
        assert (
            f"{LIB}/test/test_os.py" not in kept and f"{LIB}/site-packages/README.txt" not in kept
        )
        assert "/usr/local/lib/python3.12/os.py" not in kept  # another Python's library
    local = kept_after(members, ["/usr/local/bin/python3"])  # unversioned: PREFIX/lib/python3.*
    assert "/usr/local/lib/python3.12/json/__init__.py" in local
    assert f"{LIB}/os.py" not in local and "/usr/local/lib/python3.9/other.py" not in local
    assert f"{LIB}/os.py" not in kept_after(members, ["/opt/tool/python3.11"])  # not PREFIX/bin
    assert f"{LIB}/os.py" not in kept_after(members, ["/usr/bin/python3.11"], set())
    tree = tree_from(members)
    (seed,) = LangRules(tree, reader(members)).seeds(["/usr/bin/python3.11"])
    assert seed.path == LIB and seed.reason.by == "/usr/bin/python3.11"
    assert seed.reason.rule == "python-stdlib"


def test_a_directory_without_the_landmark_is_not_a_standard_library() -> None:
    members = [M("opt/lib/python3.11/thing.py", data=b"x"), M("opt/lib/python3.11/other.py")]
    kept = kept_after(members, ["/opt/lib/python3.11/thing.py"])
    assert "/opt/lib/python3.11/other.py" not in kept


def test_a_touched_distribution_file_keeps_every_file_its_record_lists() -> None:
    kept = kept_after(python_tree(), [f"{SITE}/requests/api.py"])
    assert {
        f"{SITE}/requests/__init__.py",
        f"{SITE}/requests-2.28.dist-info/RECORD",
        f"{SITE}/requests-2.28.dist-info/METADATA",
        "/usr/bin/requests-cli",  # ../../../bin/ in RECORD
    } <= kept
    assert f"{SITE}/yaml/__init__.py" not in kept
    assert f"{LIB}/os.py" not in kept  # dist-packages is not the standard library


def test_top_level_txt_claims_packages_and_extension_modules() -> None:
    kept = kept_after(python_tree(), [f"{SITE}/yaml/__init__.py"])
    assert {
        f"{SITE}/PyYAML-6.0.egg-info/PKG-INFO",
        f"{SITE}/_yaml.cpython-311-x86_64-linux-gnu.so",
    } <= kept
    assert f"{SITE}/requests/api.py" not in kept


def test_an_unclaimed_top_level_package_is_kept_whole() -> None:
    kept = kept_after(python_tree(), [f"{SITE}/lonely/__init__.py"])
    assert f"{SITE}/lonely/core.py" in kept
    tree = tree_from(python_tree())
    rules = LangRules(tree, reader(python_tree()))
    (seed,) = rules.seeds([f"{SITE}/lonely/__init__.py"])
    assert seed.recursive and seed.reason.rule == "python-distribution"
    assert rules.seeds([f"{SITE}/lonely/core.py"]) == []  # once is enough


def test_a_kept_package_leaves_out_gettext_sources_beside_their_catalogs() -> None:
    messages = "conf/locale/de/LC_MESSAGES"
    members = [
        M(f"{SITE[1:]}/Django-4.1.egg-info/top_level.txt", data=b"django\n"),
        M(f"{SITE[1:]}/django/__init__.py", data=b""),
        M(f"{SITE[1:]}/django/{messages}/django.mo", data=b"mo"),
        M(f"{SITE[1:]}/django/{messages}/django.po", data=b"po"),
        M(f"{SITE[1:]}/django/{messages}/djangojs.po", data=b"po"),  # no .mo: kept
        M(f"{SITE[1:]}/django/i18n/fr.po", data=b"po"),  # loaded by the app itself
        M(f"{SITE[1:]}/wheel_pkg-1.0.dist-info/RECORD",
          data=b"wheel_pkg/__init__.py,,\nwheel_pkg/locale/fr/LC_MESSAGES/m.po,,\n"
               b"wheel_pkg/locale/fr/LC_MESSAGES/m.mo,,\n"),
        M(f"{SITE[1:]}/wheel_pkg/__init__.py", data=b""),
        M(f"{SITE[1:]}/wheel_pkg/locale/fr/LC_MESSAGES/m.po", data=b"po"),
        M(f"{SITE[1:]}/wheel_pkg/locale/fr/LC_MESSAGES/m.mo", data=b"mo"),
        M(f"{SITE[1:]}/lonely/__init__.py", data=b""),
        M(f"{SITE[1:]}/lonely/locale/de/LC_MESSAGES/x.po", data=b"po"),
        M(f"{SITE[1:]}/lonely/locale/de/LC_MESSAGES/x.mo", data=b"mo"),
    ]  # fmt: skip
    touched = [f"{SITE}/django/__init__.py", f"{SITE}/wheel_pkg/__init__.py",
               f"{SITE}/lonely/__init__.py"]  # fmt: skip
    kept = kept_after(members, touched)
    assert {
        f"{SITE}/django/{messages}/django.mo",
        f"{SITE}/django/{messages}/djangojs.po",
        f"{SITE}/django/i18n/fr.po",
        f"{SITE}/wheel_pkg/locale/fr/LC_MESSAGES/m.mo",
        f"{SITE}/lonely/locale/de/LC_MESSAGES/x.mo",
    } <= kept
    assert not kept & {
        f"{SITE}/django/{messages}/django.po",
        f"{SITE}/wheel_pkg/locale/fr/LC_MESSAGES/m.po",
        f"{SITE}/lonely/locale/de/LC_MESSAGES/x.po",
    }


def node_tree() -> list[M]:
    return [
        M("app/node_modules/left-pad/index.js", data=b"module.exports = 1"),
        M("app/node_modules/left-pad/package.json", data=b"{}"),
        M("app/node_modules/@scope/pkg/lib/a.js", data=b"a"),
        M("app/node_modules/@scope/pkg/lib/b.js", data=b"b"),
        M("app/node_modules/@scope/other/index.js", data=b"o"),
        M("usr/share/nodejs/undici/index.js", data=b"u"),
        M("usr/share/nodejs/undici/lib/fetch.js", data=b"f"),
        M("usr/share/nodejs/acorn/index.js", data=b"acorn"),
    ]


def test_a_touched_node_package_is_kept_whole() -> None:
    kept = kept_after(node_tree(), ["/app/node_modules/@scope/pkg/lib/a.js"])
    assert "/app/node_modules/@scope/pkg/lib/b.js" in kept
    assert "/app/node_modules/@scope/other/index.js" not in kept
    assert "/app/node_modules/left-pad/index.js" not in kept
    debian = kept_after(node_tree(), ["/usr/share/nodejs/undici/index.js"])
    assert "/usr/share/nodejs/undici/lib/fetch.js" in debian
    assert "/usr/share/nodejs/acorn/index.js" not in debian
    assert kept_after(node_tree(), ["/app/node_modules/@scope/pkg/lib/a.js"], set()) == {
        "/",
        "/app",
        "/app/node_modules",
        "/app/node_modules/@scope",
        "/app/node_modules/@scope/pkg",
        "/app/node_modules/@scope/pkg/lib",
        "/app/node_modules/@scope/pkg/lib/a.js",
    }


def test_node_package_dir() -> None:
    assert node_package_dir("/a/node_modules/x/y/z.js") == "/a/node_modules/x"
    assert node_package_dir("/a/node_modules/x/node_modules/y/i.js") == (
        "/a/node_modules/x/node_modules/y"
    )
    assert node_package_dir("/a/node_modules/@s/p/i.js") == "/a/node_modules/@s/p"
    assert node_package_dir("/a/node_modules") is None
    assert node_package_dir("/a/node_modules/@s") is None
    assert node_package_dir("/usr/share/nodejs/acorn/dist/a.js") == "/usr/share/nodejs/acorn"
    assert node_package_dir("/usr/bin/node") is None
    multiarch = "/usr/lib/x86_64-linux-gnu/nodejs/sqlite3"
    assert node_package_dir(f"{multiarch}/lib/binding/x.node") == multiarch
    assert node_package_dir("/usr/lib/x86_64-linux-gnu/nodejs") is None
    assert node_package_dir("/usr/lib/x86_64-linux-gnu/libnode.so.108") is None


def test_a_script_requiring_a_native_debian_package_keeps_it() -> None:
    root = "usr/lib/aarch64-linux-gnu/nodejs/sqlite3"
    members = [
        M("srv/app.js", data=b"function db() { return require('sqlite3'); }\n"),
        M(f"{root}/package.json", data=b'{"main": "lib/sqlite3.js"}'),
        M(f"{root}/lib/sqlite3.js", data=b"module.exports = 1"),
        M(f"{root}/lib/binding/napi-v6/node_sqlite3.node", data=b"\x7fELF"),
    ]
    tree = tree_from(members)
    planner = Planner(tree)
    planner.add(LangRules(tree, reader(members)).imported(["/srv/app.js"]))
    assert f"/{root}/lib/binding/napi-v6/node_sqlite3.node" in set(planner.kept_paths)


def test_rule_reasons_name_the_rule_and_the_trigger() -> None:
    tree = tree_from(python_tree())
    rules = LangRules(tree, reader(python_tree()))
    (seed,) = rules.seeds([f"{LIB}/os.py"])
    assert seed.path == LIB and seed.recursive
    assert seed.reason.source == "lazy" and seed.reason.rule == "python-stdlib"
    assert seed.reason.by == f"{LIB}/os.py"
    assert rules.seeds([f"{LIB}/json/decoder.py"]) == []


def test_import_readers_name_top_level_modules_and_packages() -> None:
    py = "import os, json.decoder\nfrom yaml.loader import X\nfrom . import sibling\n"
    py += "def f():\n    import requests as r\n# import commented\nx = 'import no'\n"
    assert python_imports(py) == ["os", "json", "yaml", "requests"]
    lazy = "m = importlib.import_module('markdown.extensions')\nj = __import__(\"simplejson\")\n"
    lazy += "r = importlib.import_module('.rel', __package__)\nc = import_module(name)\n"
    assert python_imports(lazy) == ["markdown", "simplejson"]
    js = "const a = require('express');\nconst b = require(\"./local\");\n"
    js += "import x from '@scope/pkg/sub';\nimport 'side-effect';\nrequire('node:fs');\n"
    js += "const c = await import('lazy/deep.js');\nrequire('fs')\n"
    assert node_requires(js) == ["express", "@scope/pkg", "side-effect", "lazy", "fs"]
    views = "app.set('views', '/app/views');\napp.set(\"view engine\", 'ejs');\n"
    assert node_requires(views) == ["ejs"]  # Express requires it at the first render
    manifest = '{"dependencies": {"a": "1"}, "optionalDependencies": {"b": "2"}, "x": {}}'
    assert node_dependencies(manifest) == ["a", "b"]
    assert node_dependencies("not json") == [] and node_dependencies(None) == []


def imported_kept(
    members: list[M], scripts: list[str], enabled: set[str] | None = None
) -> set[str]:
    tree = tree_from(members)
    planner = Planner(tree)
    planner.add(LangRules(tree, reader(members), enabled).imported(scripts))
    return set(planner.kept_paths)


def test_a_python_script_counted_as_run_keeps_what_it_imports() -> None:
    members = [
        *python_tree(),
        M("usr/lib/cgi-bin/report.py", data=b"import json\nimport requests\nimport missing\n"),
        M("usr/lib/cgi-bin/bare", data=b"#!/usr/bin/python3\ndef f():\n    import lonely\n"),
        M("usr/lib/python3/dist-packages/requests/sessions.py", data=b"import yaml\n"),
        M("usr/lib/cgi-bin/note.txt", data=b"import requests\n"),
    ]
    kept = imported_kept(members, ["/usr/lib/cgi-bin/report.py"])
    assert {f"{SITE}/requests/api.py", f"{SITE}/requests-2.28.dist-info/METADATA"} <= kept
    assert f"{SITE}/yaml/__init__.py" in kept  # imported by requests in turn
    assert f"{SITE}/lonely/core.py" not in kept
    lonely = imported_kept(members, ["/usr/lib/cgi-bin/bare"])  # by its #! line
    assert f"{SITE}/lonely/core.py" in lonely  # an unclaimed package, whole
    assert imported_kept(members, ["/usr/lib/cgi-bin/note.txt"]) == set()
    assert imported_kept(members, ["/usr/lib/cgi-bin/report.py"], {"python-stdlib"}) == set()


def test_a_node_script_counted_as_run_keeps_its_packages_and_their_dependencies() -> None:
    members = [
        *node_tree(),
        M("usr/lib/cgi-bin/hello.js", data=b"const e = require('express');\nrequire('fs');\n"),
        M("usr/share/nodejs/express/index.js", data=b"module.exports = 1"),
        M("usr/share/nodejs/express/package.json", data=b'{"dependencies": {"undici": "*"}}'),
        M("app/hi.mjs", data=b"import pad from 'left-pad';\n"),
    ]
    kept = imported_kept(members, ["/usr/lib/cgi-bin/hello.js"])
    assert {"/usr/share/nodejs/express/index.js", "/usr/share/nodejs/undici/lib/fetch.js"} <= kept
    assert "/usr/share/nodejs/acorn/index.js" not in kept
    local = imported_kept(members, ["/app/hi.mjs"])  # node_modules above the script first
    assert "/app/node_modules/left-pad/index.js" in local
    assert imported_kept(members, ["/usr/lib/cgi-bin/hello.js"], {"python-stdlib"}) == set()
