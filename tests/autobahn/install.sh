#!/usr/bin/env bash
# Idempotent installer for Autobahn|Testsuite (wstest) used by the wsgate
# transparency check. See tests/autobahn/README.md.
#
# Installs autobahntestsuite (Python 2.7 only) into a dedicated virtualenv:
#   ${WSGATE_AUTOBAHN_VENV:-$HOME/.cache/wsgate/autobahn-venv}
# and prints the path of the resulting `wstest` binary on the last line of
# stdout. Re-running it when the venv is already complete is a fast no-op.
#
# Environment overrides:
#   WSGATE_AUTOBAHN_VENV   venv location
#   WSGATE_PYTHON2         python2.7 interpreter to build the venv from
#   WSGATE_AUTOBAHN_FORCE  set to 1 to delete and rebuild the venv
set -euo pipefail

AUTOBAHNTESTSUITE_VERSION="25.10.1"   # last release; pins a py2.7 dep set
VIRTUALENV_VERSION="16.7.12"           # last single-file virtualenv (py2.7 OK)
PIP_SPEC="pip<21"                      # pip 21+ dropped Python 2.7
SETUPTOOLS_SPEC="setuptools<45"        # setuptools 45+ dropped Python 2.7

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONSTRAINTS="${HERE}/constraints-py27.txt"   # full known-good pin set
CACHE_DIR="${HOME}/.cache/wsgate"
VENV="${WSGATE_AUTOBAHN_VENV:-${CACHE_DIR}/autobahn-venv}"
MARKER="${VENV}/.wsgate-autobahn-installed"
WANT="autobahntestsuite==${AUTOBAHNTESTSUITE_VERSION}"
[[ -f "${CONSTRAINTS}" ]] || { echo "[autobahn-install] missing ${CONSTRAINTS}" >&2; exit 1; }
# The marker records what was installed; changing the version or the
# constraints file triggers a re-install.
STAMP="${WANT} constraints-sha256=$(sha256sum "${CONSTRAINTS}" | cut -d' ' -f1)"

log() { echo "[autobahn-install] $*" >&2; }

# ---- fast path -------------------------------------------------------------
if [[ "${WSGATE_AUTOBAHN_FORCE:-0}" != 1 && -f "${MARKER}" \
      && "$(cat "${MARKER}")" == "${STAMP}" && -x "${VENV}/bin/wstest" ]]; then
  echo "${VENV}/bin/wstest"
  exit 0
fi

# ---- locate python2.7 ------------------------------------------------------
find_python2() {
  local c
  if [[ -n "${WSGATE_PYTHON2:-}" ]]; then echo "${WSGATE_PYTHON2}"; return 0; fi
  if command -v pyenv >/dev/null 2>&1; then
    for c in "$(pyenv root)"/versions/2.7*/bin/python2.7; do
      [[ -x "$c" ]] && { echo "$c"; return 0; }
    done
  fi
  for c in "${HOME}"/.pyenv/versions/2.7*/bin/python2.7 python2.7 python2; do
    if command -v "$c" >/dev/null 2>&1 \
       && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (2, 7))' 2>/dev/null; then
      command -v "$c"; return 0
    fi
  done
  return 1
}

PY2="$(find_python2)" || {
  log "ERROR: no python2.7 found (autobahntestsuite needs Python 2.7)."
  log "       install one, e.g. 'pyenv install 2.7.18', or set WSGATE_PYTHON2."
  exit 1
}
log "using python: ${PY2} ($("${PY2}" -c 'import sys; print(sys.version.split()[0])'))"

# ---- build venv -------------------------------------------------------------
# Pip options: the machine-wide PIP_FIND_LINKS etc. are harmless; keep
# network timeouts bounded.
export PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_DEFAULT_TIMEOUT="${PIP_DEFAULT_TIMEOUT:-60}"
export PIP_NO_INPUT=1
export PIP_NO_PYTHON_VERSION_WARNING=1

if [[ "${WSGATE_AUTOBAHN_FORCE:-0}" == 1 ]]; then rm -rf "${VENV}"; fi
mkdir -p "${CACHE_DIR}"

if [[ ! -x "${VENV}/bin/python" ]] \
   || ! "${VENV}/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != (2, 7))' 2>/dev/null; then
  rm -rf "${VENV}"
  # Bootstrap virtualenv 16.x (pure python, no deps, creates py2.7 envs) into a
  # private --target dir so the python2.7 installation itself is not touched.
  BOOT="${CACHE_DIR}/virtualenv-${VIRTUALENV_VERSION}-py27"
  if [[ ! -f "${BOOT}/virtualenv.py" ]]; then
    log "bootstrapping virtualenv==${VIRTUALENV_VERSION} into ${BOOT}"
    rm -rf "${BOOT}"
    "${PY2}" -m pip install --quiet --no-warn-script-location \
      --target "${BOOT}" "virtualenv==${VIRTUALENV_VERSION}"
  fi
  log "creating venv ${VENV}"
  PYTHONPATH="${BOOT}" "${PY2}" -m virtualenv --no-download -p "${PY2}" "${VENV}" >&2
fi

rm -f "${MARKER}"
log "installing ${PIP_SPEC} ${SETUPTOOLS_SPEC} into venv"
"${VENV}/bin/python" -m pip install --quiet -c "${CONSTRAINTS}" \
  "${PIP_SPEC}" "${SETUPTOOLS_SPEC}" "wheel<0.38"
log "installing ${WANT} (pins twisted 19.10 / autobahn 0.10.9; wsaccel/ujson may compile, needs gcc)"
"${VENV}/bin/python" -m pip install --quiet -c "${CONSTRAINTS}" "${WANT}"

# ---- smoke check -------------------------------------------------------------
"${VENV}/bin/wstest" --help >/dev/null 2>&1 || {
  log "ERROR: ${VENV}/bin/wstest --help failed"; "${VENV}/bin/wstest" --help >&2 || true; exit 1; }
"${VENV}/bin/python" -c 'import autobahntestsuite, autobahn, twisted' || exit 1

echo "${STAMP}" > "${MARKER}"
log "installed: $("${VENV}/bin/python" -m pip freeze 2>/dev/null | grep -i -E '^(autobahntestsuite|autobahn|twisted)==' | tr '\n' ' ')"
echo "${VENV}/bin/wstest"
