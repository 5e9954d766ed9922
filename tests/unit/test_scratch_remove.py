"""Removing scratch trees: one pass, whatever the modes, never through a symlink, and in
the background (a child process) with a wait that leaves nothing behind."""

from __future__ import annotations

import inspect
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ocislim import scratch
from ocislim.errors import OutputError
from tests.clirun import PLAIN_USER, REPO, plain_user_dir, plain_user_python


def _awkward_tree(root: Path, outside: Path) -> None:
    """Deep nesting, modes that keep the owner out, symlinks pointing outside, a FIFO."""
    deep = root / "deep"
    deep.mkdir(parents=True)
    node = deep
    for _ in range(300):  # deeper than any fd-per-level walk could go on a small ulimit
        node = node / "d"
        node.mkdir()
    (node / "leaf").write_bytes(b"x")
    for mode in (0o000, 0o500, 0o100, 0o200):
        locked = root / f"locked-{mode:o}"
        (locked / "inner").mkdir(parents=True)
        (locked / "inner" / "f").write_bytes(b"y")
        (locked / "g").write_bytes(b"z")
        os.chmod(locked / "inner", mode)
        os.chmod(locked, mode)
    (root / "to-outside").symlink_to(outside)
    (root / "to-outside-file").symlink_to(outside / "keep")
    os.mkfifo(root / "fifo")
    os.chmod(root, 0o500)


@pytest.fixture()
def outside(tmp_path: Path) -> Path:
    out = tmp_path / "outside"
    out.mkdir()
    (out / "keep").write_bytes(b"keep")
    return out


def test_remove_tree_removes_an_awkward_tree_and_nothing_outside(
    tmp_path: Path, outside: Path
) -> None:
    root = tmp_path / "tree"
    _awkward_tree(root, outside)
    scratch.remove_tree(root)
    assert not os.path.lexists(root)
    assert (outside / "keep").read_bytes() == b"keep"
    scratch.remove_tree(root)  # idempotent


def test_remove_tree_of_a_symlink_removes_the_link_only(tmp_path: Path, outside: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(outside)
    scratch.remove_tree(link)
    assert not os.path.lexists(link) and (outside / "keep").exists()


def test_remove_tree_as_a_plain_user() -> None:
    """The plain user, who cannot bypass modes, removes a tree with 0000 directories."""
    python, source = plain_user_python()
    base = plain_user_dir("ocislim-remove-")
    try:
        script = base / "case.py"
        script.write_text(
            "import os, sys; from pathlib import Path\n"
            "from ocislim.scratch import remove_tree\n"
            + inspect.getsource(_awkward_tree)
            + "b = Path(sys.argv[1]); o = b / 'outside'; o.mkdir()\n"
            "(o / 'keep').write_bytes(b'k')\n"
            "_awkward_tree(b / 'tree', o); remove_tree(b / 'tree')\n"
            "assert not os.path.lexists(b / 'tree') and (o / 'keep').exists(); print('ok')\n"
        )
        command = f"PYTHONPATH={shlex.quote(str(source))}:{shlex.quote(str(REPO))} " + shlex.join(
            [python, str(script), str(base)]
        )
        result = subprocess.run(
            ["su", PLAIN_USER, "-s", "/bin/sh", "-c", command],
            cwd="/", capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert result.stdout.strip() == "ok", result.stderr
    finally:
        shutil.rmtree(base)


def test_remove_tree_names_the_path_it_cannot_remove(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root removes from any directory")
    parent = tmp_path / "ro"
    (parent / "tree").mkdir(parents=True)
    os.chmod(parent, 0o500)
    try:
        with pytest.raises(OutputError, match="tree: cannot remove"):
            scratch.remove_tree(parent / "tree")
    finally:
        os.chmod(parent, 0o700)


def test_background_removal_is_waited_for_by_remove_of_the_holder(
    tmp_path: Path, outside: Path
) -> None:
    holder = scratch.make_dir(tmp_path, "ocislim-test-")
    _awkward_tree(holder / "rootfs", outside)
    scratch.remove_in_background(holder / "rootfs")
    scratch.remove(holder)
    assert not holder.exists() and (outside / "keep").exists()


def test_wait_removals_waits_for_paths_below_only(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name / "x").mkdir(parents=True)
    scratch.remove_in_background(tmp_path / "a" / "x")
    scratch.remove_in_background(tmp_path / "b" / "x")
    scratch.wait_removals(tmp_path / "a")
    assert not (tmp_path / "a" / "x").exists()
    scratch.wait_removals()
    assert not (tmp_path / "b" / "x").exists()


def test_a_background_removal_ends_before_the_process_does(tmp_path: Path) -> None:
    """Nobody waits: the exit handler does, so the tree is gone when the process is."""
    tree = tmp_path / "tree"
    for i in range(200):
        (tree / str(i)).mkdir(parents=True)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from ocislim import scratch;"
        "scratch.remove_in_background(sys.argv[2])"
    )
    subprocess.run([sys.executable, "-c", code, str(REPO), str(tree)], check=True)
    assert not tree.exists()
