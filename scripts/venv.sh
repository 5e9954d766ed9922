# shellcheck shell=bash
# Sourced by scripts/test.sh and scripts/demo.sh: the project's virtual environment.
#
# ensure_venv VENV SPEC
#   Creates VENV from /usr/bin/python3 (Debian's Python, which a plain user can
#   run, unlike a pyenv under /root) and pip-installs the project editable as
#   SPEC (".", ".[test]").  A venv made from another Python is replaced.  pip
#   runs only when pyproject.toml or SPEC changed since the last install, so a
#   set-up venv works offline.  Must be called from the repository root.

OCISLIM_BASE_PYTHON=${OCISLIM_BASE_PYTHON:-/usr/bin/python3}

ensure_venv() {
    local venv=$1 spec=$2 stamp_file stamp installed
    if [[ ! -x $OCISLIM_BASE_PYTHON ]]; then
        echo "error: $OCISLIM_BASE_PYTHON is missing (apt-get install python3 python3-venv)" >&2
        return 1
    fi
    local home
    home=$(dirname "$(readlink -f "$OCISLIM_BASE_PYTHON")")
    if [[ -e $venv ]] && ! grep -qx "home = $home" "$venv/pyvenv.cfg" 2>/dev/null; then
        echo "venv: $venv was not made from $OCISLIM_BASE_PYTHON; recreating it" >&2
        rm -rf "$venv"
    fi
    if [[ ! -x $venv/bin/python ]]; then
        echo "venv: creating $venv from $OCISLIM_BASE_PYTHON" >&2
        "$OCISLIM_BASE_PYTHON" -m venv "$venv"
    fi
    stamp_file=$venv/.ocislim-install
    stamp="$(sha256sum pyproject.toml | cut -d' ' -f1) $PWD $spec"
    installed=$(cat "$stamp_file" 2>/dev/null || true)
    # An install with the test extras also satisfies a plain one.
    if [[ $installed == "${stamp% *} .[test]" && $spec == . ]]; then
        stamp=$installed
    fi
    if [[ $installed != "$stamp" ]] || ! "$venv/bin/python" -c 'import ocislim' 2>/dev/null; then
        echo "venv: pip install -e $spec" >&2
        "$venv/bin/python" -m pip install --quiet --no-input --disable-pip-version-check \
            -e "$spec"
        echo "$stamp" >"$stamp_file"
    fi
}
