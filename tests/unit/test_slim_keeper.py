"""The Keeper on an unpacked synthetic image: programs a rule counts as run fire every rule."""

from __future__ import annotations

from pathlib import Path

from ocislim.image.models import ImageConfig
from ocislim.slim.keeper import Keeper, first_seeds
from ocislim.slim.options import BuildOptions
from ocislim.slim.plan import Reason, Seed
from tests.synth import M
from tests.unit.slim_synth import keeper_over

LIB = "/usr/lib/python3.11"
SITE = "/usr/lib/python3/dist-packages"


def image_members() -> list[M]:
    return [
        M("etc/apache2/apache2.conf", data=b"ScriptAlias /cgi-bin/ /usr/lib/cgi-bin/\n"),
        M("usr/sbin/apache2", data=b"\x7fELF", mode=0o755),
        M(
            "usr/lib/cgi-bin/report.py",
            data=b"#!/usr/bin/env python3\nimport json\nimport requests\n",
            mode=0o755,
        ),
        M(f"{SITE}/requests/__init__.py", data=b"# requests"),
        M(f"{SITE}/requests/api.py", data=b"# api"),
        M(
            f"{SITE}/requests-2.28.dist-info/RECORD",
            data=b"requests/__init__.py,,\nrequests/api.py,,\n",
        ),
        M("usr/bin/env", data=b"\x7fELF", mode=0o755),
        M("usr/bin/python3", "symlink", link="python3.11"),
        M("usr/bin/python3.11", data=b"\x7fELF", mode=0o755),
        M(f"{LIB}/os.py", data=b"# os"),
        M(f"{LIB}/json/__init__.py", data=b"# json"),
        M(f"{LIB}/json/__pycache__/__init__.cpython-311.pyc", data=b"pyc"),
        M("usr/bin/perl", data=b"\x7fELF", mode=0o755),
        M("usr/share/perl/5.36/POSIX.pm", data=b"1;"),
        M("app/run.sh", data=b"#!/bin/sh\nexec perl /app/tool.pl\n", mode=0o755),
        M("app/web/server.py", data=b"import json\n"),
        M("app/web/views/export.py", data=b"def export():\n    import requests\n"),
        M("app/node_modules/x/index.py", data=b"import lonely\n"),  # vendored: not read
        M(f"{SITE}/lonely/__init__.py", data=b"# lonely"),
        M("usr/local/bin/report", data=b"#!/usr/bin/env python3\nimport requests\n", mode=0o755),
        M("srv/app.py", data=b"def route():\n    import requests\n"),
        M("code/pkg/__init__.py", data=b""),
        M("code/pkg/client.py", data=b"import lonely\n"),
        M("code/templates/a.html", data=b"<p>"),
        M("usr/bin/uvicorn", data=b"#!/usr/bin/python3\nimport json\n", mode=0o755),
        M("home/user/.cache/x.py", data=b"import lonely\n"),
        M("home/user/notes.txt", data=b"n"),
        M("opt/conda/lib/python3.11/os.py", data=b"import lonely\n"),
        M("opt/conda/bin/huge", data=b"x"),
    ]


def keeper_for(
    tmp_path: Path, disable: tuple[str, ...] = (), config: dict[str, object] | None = None
) -> tuple[Keeper, ImageConfig, BuildOptions]:
    return keeper_over(tmp_path, image_members(), config, disable)


TRACED = Seed("/usr/sbin/apache2", Reason("trace", process="apache2", access=("exec",)))


def test_a_cgi_scripts_interpreter_keeps_its_standard_library(tmp_path: Path) -> None:
    keeper, _, _ = keeper_for(tmp_path)
    keeper.extend([TRACED])
    kept = keeper.plan().paths
    assert {"/usr/lib/cgi-bin/report.py", "/usr/bin/python3", "/usr/bin/python3.11"} <= set(kept)
    assert f"{LIB}/json/__init__.py" in kept  # python-stdlib, fired by the interpreter
    assert f"{LIB}/json/__pycache__/__init__.cpython-311.pyc" not in kept
    (libdir,) = [k for k in keeper.plan().kept if k.path == LIB]
    reasons = [r for r in libdir.reasons if r.rule == "python-stdlib"]
    assert [r.by for r in reasons] == ["/usr/bin/python3.11"]
    assert f"{SITE}/requests/api.py" in kept  # the distribution the script imports
    off, _, _ = keeper_for(tmp_path / "off", ("cgi-scripts",))
    off.extend([TRACED])
    assert f"{LIB}/json/__init__.py" not in off.plan().paths
    assert f"{SITE}/requests/api.py" not in off.plan().paths


def test_an_interpreter_a_script_names_fires_its_runtime_rules(tmp_path: Path) -> None:
    keeper, _, _ = keeper_for(tmp_path)
    named = Reason("lazy", detail="named by the script /app/run.sh", rule="script-commands")
    keeper.extend([Seed("/usr/bin/perl", named)])
    assert "/usr/share/perl/5.36/POSIX.pm" in keeper.plan().paths  # perl-inc
    traced_elsewhere, _, _ = keeper_for(tmp_path / "other")
    other = Reason("lazy", detail="an application tree", rule="app-whole")
    traced_elsewhere.extend([Seed("/usr/bin/perl", other)])
    assert "/usr/share/perl/5.36/POSIX.pm" not in traced_elsewhere.plan().paths


def test_a_script_a_script_names_brings_its_interpreter_and_imports(tmp_path: Path) -> None:
    keeper, _, _ = keeper_for(tmp_path)
    named = Reason("lazy", detail="named by the script /app/run.sh", rule="script-commands")
    keeper.extend([Seed("/usr/local/bin/report", named)])
    kept = keeper.plan().paths
    assert "/usr/bin/python3.11" in kept  # its #! interpreter (the ELF pass keeps it too)
    assert f"{LIB}/json/__init__.py" in kept  # which counts as run: python-stdlib
    assert f"{SITE}/requests/api.py" in kept  # and the script's imports


def test_the_application_code_keeps_what_it_imports_on_paths_not_probed(tmp_path: Path) -> None:
    argv: dict[str, object] = {"Entrypoint": ["python3", "/app/web/server.py"]}
    keeper, config, options = keeper_for(tmp_path, config=argv)
    keeper.extend(first_seeds(keeper, config, options, [], [], lambda note: None))
    kept = keeper.plan().paths
    assert "/app/web/views/export.py" in kept  # app-whole
    assert f"{SITE}/requests/api.py" in kept  # a lazy import in a route the probe never ran
    assert f"{SITE}/lonely/__init__.py" not in kept
    off, config, options = keeper_for(tmp_path / "off", ("app-whole",), argv)
    off.extend(first_seeds(off, config, options, [], [], lambda note: None))
    assert f"{SITE}/requests/api.py" not in off.plan().paths


def _plan(tmp_path: Path, config: dict[str, object], traced: list[Seed]) -> set[str]:
    keeper, image_config, options = keeper_for(tmp_path, config=config)
    keeper.extend(first_seeds(keeper, image_config, options, traced, [], lambda note: None))
    return set(keeper.plan().paths)


def _loaded(path: str) -> Seed:
    return Seed(path, Reason("trace", process="python3", access=("read",)))


def test_a_script_in_a_system_directory_has_its_imports_read(tmp_path: Path) -> None:
    kept = _plan(tmp_path, {"Entrypoint": ["python3", "/srv/app.py"]}, [])
    assert f"{SITE}/requests/api.py" in kept  # /srv is no application tree, but the script runs
    assert "/code/pkg/client.py" not in kept


def test_a_directory_the_command_names_is_an_application_tree(tmp_path: Path) -> None:
    kept = _plan(tmp_path, {"Entrypoint": ["uvicorn", "--app-dir", "/code", "pkg:app"]}, [])
    assert {"/code/templates/a.html", f"{SITE}/lonely/__init__.py"} <= kept


def test_application_sources_the_run_loaded_mark_their_tree(tmp_path: Path) -> None:
    traced = [_loaded("/code/pkg/__init__.py"), _loaded("/home/user/.cache/x.py")]
    kept = _plan(tmp_path, {"Entrypoint": ["uvicorn", "pkg:app"]}, traced)
    assert {"/code/templates/a.html", "/code/pkg/client.py", f"{SITE}/lonely/__init__.py"} <= kept
    kept = _plan(tmp_path / "hidden", {"Entrypoint": ["uvicorn", "pkg:app"]}, traced[1:])
    assert "/home/user/notes.txt" not in kept  # a hidden directory is no application
    kept = _plan(tmp_path / "conda", {}, [_loaded("/opt/conda/lib/python3.11/os.py")])
    assert "/opt/conda/bin/huge" not in kept  # nor a runtime's library outside /usr
