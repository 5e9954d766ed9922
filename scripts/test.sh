#!/usr/bin/env bash
# Set up everything the tests need on a fresh Debian bookworm machine, then run
# ruff, mypy and the test suite.  Arguments are passed to pytest.
#
# As root it also installs the missing system packages (apt-get), writes
# /etc/containers/containers.conf when there is none, creates the plain user
# `tester`, and builds the fixture images into their cache (in the background,
# while the venv is made and the unit tests run).  As a plain user it
# only checks, and tests needing what is missing skip (or fail under
# OCISLIM_REQUIRE_TOOLS=1, as in CI).  Exits non-zero on any failure, including
# pytest collecting no tests.
set -euo pipefail
umask 022
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=$ROOT/.venv
TESTER=tester
# Used only when the plain user cannot read this clone (e.g. a clone under /root).
TESTER_VENV=/var/tmp/ocislim-ci-venv-$(printf %s "$PWD" | sha256sum | cut -c1-12)
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1
# shellcheck source=scripts/venv.sh
source scripts/venv.sh

# Debian packages the tests use (tools under test, oracles, compilers for test programs).
PACKAGES=(
    python3 python3-venv ca-certificates debian-archive-keyring
    mmdebstrap umoci skopeo podman runc uidmap
    pax-utils strace gcc gcc-multilib libc6-dev musl-tools tmux
    golang-github-opencontainers-image-spec-dev chromium openjdk-17-jdk-headless
)

step() { echo "== $* (${SECONDS}s)" >&2; }
is_root() { [[ $EUID -eq 0 ]]; }

missing_packages() {
    local pkg
    for pkg in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -qx 'install ok installed' \
            || echo "$pkg"
    done
}

install_packages() {
    local missing
    mapfile -t missing < <(missing_packages)
    if ((${#missing[@]} == 0)); then
        return
    fi
    if ! is_root; then
        echo "warning: missing packages (run as root to install): ${missing[*]}" >&2
        return
    fi
    step "apt-get install ${missing[*]}"
    apt-get update -q </dev/null
    apt-get install -y -q "${missing[@]}" </dev/null
}

configure_podman() {
    # crun fails on this machine's hybrid cgroups; runc with cgroupfs works.
    local conf=/etc/containers/containers.conf
    if [[ -e $conf ]] || ! is_root; then
        return
    fi
    step "writing $conf"
    mkdir -p /etc/containers
    cat >"$conf.tmp" <<'CONF'
# Written by ocislim scripts/test.sh.
[containers]
default_ulimits = []

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
CONF
    mv "$conf.tmp" "$conf"
}

ensure_tester() {
    is_root || return 0
    if ! id "$TESTER" >/dev/null 2>&1; then
        step "creating user $TESTER"
        useradd --create-home --shell /bin/bash "$TESTER"
    fi
    if ! grep -q "^$TESTER:" /etc/subuid 2>/dev/null; then
        usermod --add-subuids 100000-165535 --add-subgids 100000-165535 "$TESTER"
    fi
}

as_tester() { su "$TESTER" -s /bin/sh -c "$1" </dev/null; }

# A Python the plain user can run with this checkout importable: the clone's
# venv when the user can read the clone, else a copy installed under /var/tmp.
tester_python() {
    is_root && id "$TESTER" >/dev/null 2>&1 || return 0
    local probe="import ocislim, click, elftools, jsonschema, zstandard, pytest"
    if as_tester "cd / && '$VENV/bin/python' -c '$probe'" 2>/dev/null; then
        export OCISLIM_TESTER_PYTHON=$VENV/bin/python
        return
    fi
    step "the clone is not readable by $TESTER: installing a copy into $TESTER_VENV"
    local stamp
    stamp=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [[ "$(cat "$TESTER_VENV/.ocislim-deps" 2>/dev/null)" == "$stamp" ]]; then
        # Same dependencies: only refresh the copy of the package.
        "$TESTER_VENV/bin/python" -m pip install --quiet --no-input --no-deps \
            --force-reinstall "$ROOT"
    else
        rm -rf "$TESTER_VENV"
        "$OCISLIM_BASE_PYTHON" -m venv "$TESTER_VENV"
        "$TESTER_VENV/bin/python" -m pip install --quiet --no-input "$ROOT[test]"
        echo "$stamp" >"$TESTER_VENV/.ocislim-deps"
    fi
    chmod -R a+rX "$TESTER_VENV"
    as_tester "cd / && '$TESTER_VENV/bin/python' -c '$probe'"
    export OCISLIM_TESTER_PYTHON=$TESTER_VENV/bin/python
}

# The fixture build runs in its own session so that an early exit can stop it
# with everything it started; tests that need an image meanwhile wait on the
# builder's locks (or build that image themselves).
FIXTURE_PID=
FIXTURE_LOG=

start_fixture_build() {
    is_root || return 0
    step "fixture images, in the background (cache: ${OCISLIM_FIXTURE_CACHE:-/var/tmp/ocislim-fixtures})"
    FIXTURE_LOG=$(mktemp /tmp/ocislim-fixtures.XXXXXX)
    setsid "$OCISLIM_BASE_PYTHON" fixtures/build_images.py build >"$FIXTURE_LOG" 2>&1 </dev/null &
    FIXTURE_PID=$!
}

finish_fixture_build() {
    [[ -n $FIXTURE_PID ]] || return 0
    local rc=0
    wait "$FIXTURE_PID" || rc=$?
    FIXTURE_PID=
    step "fixture images: exit $rc"
    grep -v '^/' "$FIXTURE_LOG" >&2 || true
    rm -f "$FIXTURE_LOG"
    return "$rc"
}

stop_fixture_build() {
    if [[ -n $FIXTURE_PID ]]; then
        kill -TERM -- "-$FIXTURE_PID" 2>/dev/null || true
        wait "$FIXTURE_PID" 2>/dev/null || true
    fi
    [[ -z $FIXTURE_LOG ]] || rm -f "$FIXTURE_LOG"
}
trap stop_fixture_build EXIT

run_pytest() {
    local rc=0
    step "pytest $*"
    "$VENV/bin/python" -m pytest "$@" || rc=$?
    if ((rc == 5)); then
        echo "error: pytest collected no tests" >&2
        return 1
    fi
    return "$rc"
}

install_packages
configure_podman
ensure_tester
start_fixture_build
step "venv $VENV"
ensure_venv "$VENV" ".[test]"
chmod -R a+rX "$VENV"
tester_python
step "ruff"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
step "mypy"
"$VENV/bin/mypy" ocislim
status=0
run_pytest "$@" || status=$?
finish_fixture_build || status=1
step "done: exit $status"
exit "$status"
