"""Progress as users see it: a bar redrawn in place on a terminal (tmux), plain periodic
lines through a pipe, nothing with ``-q``, clean stdout with ``--json``."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests import synth
from tests.clirun import run_cli
from tests.integration.exec_support import ocislim_argv, tmux

pytestmark = [pytest.mark.integration]

LAYER_MIB = 40  # above the size that gets per-tenth lines off a terminal
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")  # anything but text and newlines


@pytest.fixture(scope="module")
def big_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uncompressed layer of random bytes (compressed bytes = bytes read)."""
    tmp = tmp_path_factory.mktemp("progress")
    raw = synth.layer([synth.M("big", data=os.urandom(LAYER_MIB << 20))])
    return synth.oci_archive(tmp, [raw], compress=False)


def test_through_a_pipe_periodic_lines_appear_without_control_characters(
    big_image: Path,
) -> None:
    result = run_cli("inspect", str(big_image))
    assert result.code == 0, result.stderr
    counts = re.findall(
        r"(?m)^ocislim:   layer 1: \[[#-]+\] +(\d+)%, [\d.]+ MB of [\d.]+ MB", result.stderr
    )
    assert len(counts) >= 5 and counts[-1] == "100", result.stderr
    assert re.search(r"(?m)^ocislim: read: layer 1/1 sha256:[0-9a-f]{64}$", result.stderr)
    assert not CONTROL.search(result.stderr), repr(result.stderr)


def test_quiet_silences_progress_and_json_keeps_stdout_clean(big_image: Path) -> None:
    quiet = run_cli("inspect", "-q", str(big_image))
    assert quiet.code == 0 and quiet.stderr == "" and quiet.stdout
    as_json = run_cli("inspect", "--json", str(big_image))
    assert as_json.code == 0, as_json.stderr
    assert len(json.loads(as_json.stdout)["layers"]) == 1  # stdout is the JSON and only it
    assert "layer 1: [" not in as_json.stdout + as_json.stderr


def test_on_a_terminal_the_bar_is_redrawn_in_place(big_image: Path, tmp_path: Path) -> None:
    gate, raw = tmp_path / "go", tmp_path / "raw"
    command = " ".join(ocislim_argv("inspect", str(big_image)))
    with tmux(f"ocislim-progress-{os.getpid()}") as term:
        # Start once pipe-pane is recording, so the raw output holds every redraw.
        term.window("bar", ["sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.1; done; {command}"])
        term.cmd("pipe-pane", "-t", "t:bar", "-o", f"cat > {raw}")
        gate.touch()
        term.wait_for("bar", r"BAR-EXIT=\d+")
        screen = term.screen("bar")
    assert "BAR-EXIT=0" in screen, screen
    output = raw.read_bytes().decode()
    draws = re.findall(r"\r  layer 1: \[[#-]+\] +(\d+)%[^\r\n]*\x1b\[K", output)
    assert len(draws) >= 3 and len(set(draws)) >= 3, repr(output)
    # Redrawn over one line: the stage line, then the bar gone before the next text.
    assert "ocislim: read: layer 1/1 sha256:" in screen
    assert "layer 1: [" not in screen, screen
    assert "\n" not in output.split("\r  layer 1: [", 1)[1].rsplit("\r\x1b[K", 1)[0]
