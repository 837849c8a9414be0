#!/usr/bin/env bash
# The one place that installs what vidx needs: Debian packages and the Python
# environment. .ci/run, the README's commands and the Dockerfile all call it,
# so CI exercises the same steps the image runs.
#
# Environment knobs (all optional):
#   VIDX_VENV=.venv         virtualenv to create/use ("" = current interpreter)
#   VIDX_EXTRAS=test        pip extras of the project to install ("" = none)
#   VIDX_SKIP_APT=1         do not apt-get (packages already present)
#   VIDX_APT_PACKAGES=...   override the Debian package list
#   VIDX_SKIP_PYTHON=1      only the Debian packages (the Docker runtime stage)
#   VIDX_EDITABLE=1         pip install -e . (0: a regular, non-editable install)
#   TORCH_VERSION/TORCHVISION_VERSION  pinned torch pair (default 2.14.1/0.29.1)
#   TORCH_INDEX_URL         e.g. https://download.pytorch.org/whl/cpu for a CPU-only wheel
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VIDX_VENV-.venv}
EXTRAS=${VIDX_EXTRAS-test}
APT_PACKAGES=${VIDX_APT_PACKAGES-"ffmpeg util-linux redis-server chromium chromium-driver"}
TORCH_VERSION=${TORCH_VERSION:-2.14.1}
TORCHVISION_VERSION=${TORCHVISION_VERSION:-0.29.1}

log() { echo "[install] $*" >&2; }

if [ "${VIDX_SKIP_APT:-0}" != "1" ] && [ -n "$APT_PACKAGES" ]; then
  missing=""
  for pkg in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
  done
  if [ -n "$missing" ]; then
    log "apt-get install$missing"
    SUDO=""; [ "$(id -u)" = "0" ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
  fi
fi

[ "${VIDX_SKIP_PYTHON:-0}" = "1" ] && { log "done (Debian packages only)"; exit 0; }

if [ -n "$VENV" ]; then
  [ -x "$VENV/bin/python" ] || { log "creating $VENV"; python3 -m venv "$VENV"; }
  PY="$VENV/bin/python"
else
  PY=python3
fi
PIP=("$PY" -m pip install --disable-pip-version-check -q)

if ! "$PY" -c "import torch, torchvision, sys; sys.exit(0 if torch.__version__.split('+')[0] == '$TORCH_VERSION' else 1)" 2>/dev/null; then
  log "installing torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION"
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    "${PIP[@]}" --index-url "$TORCH_INDEX_URL" "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
  else
    "${PIP[@]}" "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
  fi
fi

target="."
[ -n "$EXTRAS" ] && target=".[$EXTRAS]"
log "installing vidx ($target)"
if [ "${VIDX_EDITABLE:-1}" = "1" ]; then
  "${PIP[@]}" -e "$target"
else
  "${PIP[@]}" "$target"
fi
log "done: $("$PY" -c 'import torch; print("torch", torch.__version__)')"
