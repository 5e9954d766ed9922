"""``ocislim completion bash|zsh|fish``: the scripts, and that bash really completes with them.

The scripts call ``ocislim`` back at each <TAB>, so the tests put this venv's
``ocislim`` first on PATH and drive the generated bash function as bash's
``complete -F`` would (COMP_WORDS, COMP_CWORD, then COMPREPLY).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.clirun import run_cli

BIN = Path(sys.executable).parent
COMMANDS = ("build", "convert", "deps", "diff", "exec", "inspect", "ps", "run", "trace", "xray")


def _env() -> dict[str, str]:
    if not (BIN / "ocislim").exists():
        pytest.skip("the ocislim entry point is not installed beside this Python")
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def bash_complete(*words: str) -> list[str]:
    """What <TAB> after ``words`` (the last one being completed) offers in bash."""
    script = run_cli("completion", "bash")
    assert script.code == 0, script.stderr
    quoted = " ".join(f"'{w}'" for w in words)
    program = (
        f"{script.stdout}\n"
        f"COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; COMPREPLY=()\n"
        '_ocislim_completion ocislim; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    bash = shutil.which("bash")
    assert bash is not None
    result = subprocess.run(
        [bash, "--norc", "-c", program], capture_output=True, text=True, env=_env(), timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line]


def test_bash_completes_commands_flags_and_choices() -> None:
    assert bash_complete("ocislim", "bu") == ["build"]
    assert bash_complete("ocislim", "con") == ["convert"]
    assert bash_complete("ocislim", "build", "--form") == ["--format"]
    assert bash_complete("ocislim", "build", "--format", "") == [
        "oci-archive",
        "docker-archive",
        "oci-dir",
    ]
    assert bash_complete("ocislim", "completion", "") == ["bash", "zsh", "fish"]
    assert bash_complete("ocislim", "nothing-like-this") == []


def test_bash_script_registers_the_function() -> None:
    script = run_cli("completion", "bash").stdout
    bash = shutil.which("bash")
    assert bash is not None
    result = subprocess.run(
        [bash, "--norc", "-c", f"{script}\ncomplete -p ocislim"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and "_ocislim_completion" in result.stdout, result.stderr


@pytest.mark.parametrize("shell, first", [("zsh", "#compdef ocislim"), ("fish", "function")])
def test_zsh_and_fish_scripts(shell: str, first: str) -> None:
    result = run_cli("completion", shell)
    assert result.code == 0, result.stderr
    text = result.stdout
    assert text.startswith(first) and "_OCISLIM_COMPLETE" in text
    assert all(name in text for name in COMMANDS)  # named in the closing comment
    # the protocol those scripts speak gives the same answer as bash's
    env = {**_env(), "_OCISLIM_COMPLETE": f"{shell}_complete", "COMP_WORDS": "ocislim bu"}
    env["COMP_CWORD"] = "bu" if shell == "fish" else "1"
    answer = subprocess.run(
        ["ocislim"], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    lines = answer.stdout.splitlines()
    if shell == "fish":
        assert [line.split("\t")[0] for line in lines] == ["plain,build"], answer.stdout
    else:
        assert lines[:2] == ["plain", "build"], answer.stdout


def test_unknown_shell_is_a_usage_error() -> None:
    result = run_cli("completion", "tcsh")
    assert result.code == 2 and "'tcsh'" in result.error
