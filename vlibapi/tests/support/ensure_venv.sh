#!/usr/bin/env bash
# Creates (once) a Python virtual environment with the real vpp_papi 2.4.2 client and prints
# the path of its python3. Safe to run from several test processes at once: creation happens
# under an exclusive flock, and a marker file is written only after pip succeeded.
set -euo pipefail
venv="${1:?usage: ensure_venv.sh VENV_DIR}"
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
if [ ! -f "$venv/.vpp-papi-2.4.2-ready" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check vpp-papi==2.4.2 >&2
    touch "$venv/.vpp-papi-2.4.2-ready"
fi
echo "$venv/bin/python3"
