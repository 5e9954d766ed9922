"""python-app-imports and node-app-requires: what an application's own code imports."""

from __future__ import annotations

from ocislim.slim.appimports import (
    NODE,
    PYTHON,
    Language,
    import_seeds,
    node_requires,
    python_imports,
    runs_with,
)
from ocislim.slim.langrules import LangRules
from ocislim.slim.plan import Planner
from tests.synth import M
from tests.unit.slim_synth import python_tree, reader, tree_from

SITE = "/usr/lib/python3/dist-packages"


def test_python_imports_reads_every_absolute_import_form() -> None:
    source = """
import os, json.decoder as jd
import requests
from yaml import safe_load
from . import sibling
from .models import Thing
def route():
    import lonely.core
    mod = importlib.import_module("email.mime.text")
    other = __import__('csv')
text = "no import here"
x = 1  # import nothing
"""
    assert python_imports(source) == {
        "os", "json", "requests", "yaml", "lonely", "email", "csv"
    }  # fmt: skip


def test_a_script_is_known_by_its_hash_bang() -> None:
    assert runs_with("#!/usr/bin/env python3\nprint(1)\n", "python")
    assert runs_with("#!/usr/bin/python3.11 -u\n", "python")
    assert not runs_with("#!/bin/sh\npython3 x.py\n", "python")
    assert not runs_with("import os\n", "python")
    assert runs_with("#!/usr/bin/env node\n", "node")


def kept(
    members: list[M], roots: list[str], scripts: tuple[str, ...] = (), language: Language = PYTHON
) -> set[str]:
    tree = tree_from(members)
    lang = LangRules(tree, reader(members))
    planner = Planner(tree)
    planner.add(import_seeds(language, tree, roots, scripts, reader(members), lang))
    return set(planner.kept_paths)


def test_a_lazy_import_in_the_app_keeps_the_distribution_and_what_it_imports() -> None:
    members = [
        *python_tree(),
        M("app/app.py", data=b"import os\n\ndef export():\n    import yaml\n"),
        # PyYAML's own code imports requests: kept in turn.
        M("usr/lib/python3/dist-packages/yaml/loader.py", data=b"from requests import api\n"),
    ]
    out = kept(members, ["/app"])
    assert f"{SITE}/yaml/__init__.py" in out
    assert f"{SITE}/_yaml.cpython-311-x86_64-linux-gnu.so" in out  # top_level.txt names it
    assert f"{SITE}/PyYAML-6.0.egg-info/PKG-INFO" in out
    assert f"{SITE}/requests/api.py" in out  # imported by yaml's loader
    assert f"{SITE}/requests-2.28.dist-info/RECORD" in out
    assert f"{SITE}/lonely/core.py" not in out  # nothing imports it


def test_a_package_without_metadata_is_kept_whole_and_unknown_names_keep_nothing() -> None:
    members = [*python_tree(), M("srv/tool/run.py", data=b"import lonely\nimport notinstalled\n")]
    out = kept(members, ["/srv/tool"])
    assert {f"{SITE}/lonely/__init__.py", f"{SITE}/lonely/core.py"} <= out
    assert not any("yaml" in p or "requests" in p for p in out)


def test_scripts_count_by_name_or_hash_bang_and_other_code_in_the_app_is_not_read() -> None:
    members = [
        *python_tree(),
        M("usr/local/bin/tool", data=b"#!/usr/bin/python3\nimport yaml\n", mode=0o755),
        M("usr/local/bin/shell", data=b"#!/bin/sh\nimport requests\n", mode=0o755),
        # A virtualenv inside the app is other code: its imports are not the app's.
        M("app/venv/lib/python3.11/site-packages/x/__init__.py", data=b"import lonely\n"),
        M("app/main.py", data=b"print('hi')\n"),
    ]
    out = kept(members, ["/app"], ("/usr/local/bin/tool", "/usr/local/bin/shell"))
    assert f"{SITE}/yaml/__init__.py" in out
    assert not any("requests" in p for p in out)  # not a Python script
    assert not any("lonely" in p for p in out)


def test_node_requires_reads_every_package_specifier() -> None:
    source = """
const express = require('express');
const { x } = require("@scope/tool/lib/x");
import yaml from "yaml";
import "side-effect";
export { y } from 'reexported';
async function later() { const m = await import('lazy-pkg'); }
const fs = require('node:fs'), local = require('./local'), abs = require('/opt/x');
const computed = require(name);
"""
    assert node_requires(source) == {
        "express", "@scope/tool", "yaml", "side-effect", "reexported", "lazy-pkg"
    }  # fmt: skip


NODE_ROOT = "/usr/share/nodejs"


def node_tree() -> list[M]:
    return [
        M("usr/bin/node", data=b"\x7fELF....", mode=0o755),
        M(f"{NODE_ROOT.lstrip('/')}/express/package.json", data=b"{}"),
        M(f"{NODE_ROOT.lstrip('/')}/express/index.js", data=b"module.exports = require('debug');"),
        M(f"{NODE_ROOT.lstrip('/')}/debug/package.json", data=b"{}"),
        M(f"{NODE_ROOT.lstrip('/')}/debug/src/index.js", data=b"// no requires"),
        M(f"{NODE_ROOT.lstrip('/')}/yaml/package.json", data=b"{}"),
        M(f"{NODE_ROOT.lstrip('/')}/yaml/dist/index.js", data=b"exports.parse = 1;"),
        M(f"{NODE_ROOT.lstrip('/')}/unused/package.json", data=b"{}"),
        M("app/node_modules/local-dep/index.js", data=b"require('unused')"),
    ]


def test_a_lazy_require_in_the_app_keeps_the_package_as_node_finds_it() -> None:
    members = [
        *node_tree(),
        M("app/server.js", data=b"const express = require('express');\n"
          b"function route() { return require('yaml').parse('a: 1'); }\n"),
        # The app's own node_modules wins over the global root, as in Node.
        M("app/node_modules/yaml/index.js", data=b"// the app's copy"),
    ]  # fmt: skip
    out = kept(members, ["/app"], language=NODE)
    assert f"{NODE_ROOT}/express/index.js" in out
    assert f"{NODE_ROOT}/debug/src/index.js" in out  # required by express in turn
    assert "/app/node_modules/yaml/index.js" in out
    assert f"{NODE_ROOT}/yaml/dist/index.js" not in out
    assert f"{NODE_ROOT}/unused/package.json" not in out  # only other code names it


def test_a_node_script_named_by_the_command_is_read() -> None:
    members = [
        *node_tree(),
        M("usr/local/bin/tool", data=b"#!/usr/bin/env node\nrequire('yaml')\n"),
    ]
    out = kept(members, [], ("/usr/local/bin/tool",), language=NODE)
    assert f"{NODE_ROOT}/yaml/dist/index.js" in out
    assert not kept(members, [], ("/usr/local/bin/tool",), language=PYTHON) & {
        f"{NODE_ROOT}/yaml/dist/index.js"
    }


def test_a_kept_node_package_is_read_from_its_entry_points_only() -> None:
    root = NODE_ROOT.lstrip("/")
    members = [
        *node_tree(),
        M("app/server.js", data=b"require('lib'); require('util');\n"),
        M(f"{root}/lib/package.json", data=b'{"main": "./src/main", "exports": {".": "./x"}}'),
        M(f"{root}/lib/src/main.js", data=b"module.exports = require('./helper');\n"),
        M(f"{root}/lib/src/helper.js", data=b"const d = require('debug');\n"),
        # Neither a browser bundle nor a test file is loaded by the package's entry.
        M(f"{root}/lib/dist/bundle.js", data=b"require('yaml')\n"),
        M(f"{root}/lib/test-things.js", data=b"require('unused')\n"),
        # A browser polyfill with a built-in's name: require('util') is the built-in.
        M(f"{root}/util/package.json", data=b"{}"),
        M(f"{root}/util/util.js", data=b"// polyfill"),
    ]  # fmt: skip
    out = kept(members, ["/app"], language=NODE)
    assert f"{NODE_ROOT}/lib/src/helper.js" in out
    assert f"{NODE_ROOT}/debug/src/index.js" in out  # required by the relatively loaded helper
    assert not any(p.startswith((f"{NODE_ROOT}/yaml", f"{NODE_ROOT}/unused")) for p in out)
    assert not any(p.startswith(f"{NODE_ROOT}/util") for p in out)
