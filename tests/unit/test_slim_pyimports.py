"""python-app-imports: the distributions an application's own Python code imports."""

from __future__ import annotations

from ocislim.slim.langrules import LangRules
from ocislim.slim.plan import Planner
from ocislim.slim.pyimports import import_seeds, imported_names, is_python_script
from tests.synth import M
from tests.unit.slim_synth import python_tree, reader, tree_from

SITE = "/usr/lib/python3/dist-packages"


def test_imported_names_reads_every_absolute_import_form() -> None:
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
    assert imported_names(source) == {
        "os", "json", "requests", "yaml", "lonely", "email", "csv"
    }  # fmt: skip


def test_a_python_script_is_known_by_its_hash_bang() -> None:
    assert is_python_script("#!/usr/bin/env python3\nprint(1)\n")
    assert is_python_script("#!/usr/bin/python3.11 -u\n")
    assert not is_python_script("#!/bin/sh\npython3 x.py\n")
    assert not is_python_script("import os\n")


def kept(members: list[M], roots: list[str], scripts: tuple[str, ...] = ()) -> set[str]:
    tree = tree_from(members)
    lang = LangRules(tree, reader(members))
    planner = Planner(tree)
    planner.add(import_seeds(tree, roots, scripts, reader(members), lang))
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
