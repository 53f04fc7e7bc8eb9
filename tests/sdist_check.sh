#!/bin/sh
# sdist_check.sh [PYTEST ARGS...]: prove that the sdist holds all the tests need.
# Builds the sdist, unpacks it in a temporary directory, installs pyxs[dev] from
# it into a fresh virtualenv there (not the checkout: the tests import the
# installed package) and runs the test suite from the unpacked tree.
# $PYTHON (default .venv/bin/python, with `build` from the dev extra) builds it.
# The temporary directory is removed on exit.
set -eu
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
work=$(mktemp -d "${TMPDIR:-/tmp}/pyxs-sdist.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
"$PYTHON" -m build --sdist --outdir "$work/dist" . >"$work/build.log" 2>&1 || {
    cat "$work/build.log" >&2
    exit 1
}
sdist=$(ls "$work"/dist/pyxs-*.tar.gz)
tar -xzf "$sdist" -C "$work"
tree=$(ls -d "$work"/pyxs-*/)
"$PYTHON" -m venv "$tree/.venv"
"$tree/.venv/bin/pip" install -q "$sdist[dev]"
cd "$tree"
echo "sdist_check: $(basename "$sdist") unpacked and installed; pytest $*"
.venv/bin/python -m pytest "$@"
