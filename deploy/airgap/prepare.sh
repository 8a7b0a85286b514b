#!/usr/bin/env bash
# Prepare perfnode's container deployment for a site with no image registry and no internet
# (an air-gapped hospital network). Run as root on a Debian/Ubuntu machine that reaches a Debian
# mirror (or a local one: DEBIAN_MIRROR=...) and PyPI (or a local index: pip's own configuration).
#
#   deploy/airgap/prepare.sh [--save FILE.tar] [--rebuild]
#
# It makes, without Docker Hub:
#   perfnode/debian:bookworm        Debian minbase from debootstrap (what debian:bookworm-slim is)
#   perfnode/node-base:bookworm     + Python 3, venv, DCMTK, CA certificates (the node's base image)
#   perfnode/postgres:15-bookworm   + Debian's PostgreSQL 15, with an entrypoint that reads the
#                                   official image's variables (POSTGRES_USER/_DB/_PASSWORD[_FILE])
#   deploy/wheelhouse/*.whl         every Python package the node needs (pip wheel)
# --save writes the three images to one tar for `docker load` on the site. There:
#   docker load -i FILE.tar
#   docker-compose -f docker-compose.yml -f docker-compose.airgap.yml up -d --build
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
WORK="${PERFNODE_AIRGAP_WORK:-/var/tmp/perfnode-airgap}"
PYTHON="${PYTHON:-python3}"
SAVE=""; REBUILD=0
while [ $# -gt 0 ]; do
  case "$1" in
    --save) SAVE="$2"; shift 2 ;;
    --rebuild) REBUILD=1; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "prepare.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "prepare.sh: debootstrap and docker import need root" >&2; exit 1; }
for tool in debootstrap docker; do
  command -v "$tool" >/dev/null || { echo "prepare.sh: $tool not installed (apt-get install debootstrap docker.io)" >&2; exit 1; }
done
docker info >/dev/null 2>&1 || { echo "prepare.sh: no Docker daemon (start dockerd)" >&2; exit 1; }

have() { docker image inspect "$1" >/dev/null 2>&1 && [ "$REBUILD" = 0 ]; }
say() { echo "prepare.sh: $*" >&2; }

# A root file system in $1 with the extra packages $2 (space-separated) from the Debian mirror.
rootfs() {
  local dir="$1" extra="$2"
  rm -rf "$dir"
  if [ ! -d "$WORK/minbase" ]; then
    say "debootstrap $SUITE (minbase) from $MIRROR"
    mkdir -p "$WORK/cache"
    debootstrap --variant=minbase --cache-dir="$WORK/cache" "$SUITE" "$WORK/minbase.tmp" "$MIRROR" >&2
    cat > "$WORK/minbase.tmp/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
SOURCES
    # No service starts inside a chroot or a container build; no man pages or docs in images.
    printf '#!/bin/sh\nexit 101\n' > "$WORK/minbase.tmp/usr/sbin/policy-rc.d"
    chmod +x "$WORK/minbase.tmp/usr/sbin/policy-rc.d"
    cat > "$WORK/minbase.tmp/etc/dpkg/dpkg.cfg.d/perfnode-nodoc" <<'NODOC'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
NODOC
    chroot "$WORK/minbase.tmp" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive chroot "$WORK/minbase.tmp" apt-get -y -qq upgrade >&2
    mv "$WORK/minbase.tmp" "$WORK/minbase"
  fi
  cp -a "$WORK/minbase" "$dir"
  if [ -n "$extra" ]; then
    say "installing $extra"
    chroot "$dir" apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive chroot "$dir" apt-get install -y -qq --no-install-recommends $extra >&2
  fi
  chroot "$dir" apt-get clean
  rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/var/log/*.log "$dir"/tmp/* \
         "$dir"/var/cache/debconf/*-old "$dir"/var/lib/dpkg/*-old
}

# Import a root file system as an image (numeric owners kept), with Dockerfile-style changes.
import_rootfs() {
  local dir="$1" tag="$2"; shift 2
  local changes=(--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
                 --change 'ENV LANG=C.UTF-8')
  for c in "$@"; do changes+=(--change "$c"); done
  tar --numeric-owner --xattrs -C "$dir" -c . | docker import "${changes[@]}" - "$tag" >/dev/null
  rm -rf "$dir"
  say "imported $tag ($(docker image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'))"
}

if ! have perfnode/debian:bookworm; then
  rootfs "$WORK/debian" ""
  import_rootfs "$WORK/debian" perfnode/debian:bookworm 'CMD ["bash"]'
fi

if ! have perfnode/node-base:bookworm; then
  rootfs "$WORK/node" "python3 python3-venv dcmtk ca-certificates"
  import_rootfs "$WORK/node" perfnode/node-base:bookworm 'CMD ["bash"]'
fi

if ! have perfnode/postgres:15-bookworm; then
  mkdir -p "$WORK"
  rm -rf "$WORK/pg"
  # Debian's postgresql-common would create and start a cluster at install: not in an image.
  rootfs "$WORK/pg" ""
  mkdir -p "$WORK/pg/etc/postgresql-common"
  echo "create_main_cluster = false" > "$WORK/pg/etc/postgresql-common/createcluster.conf"
  chroot "$WORK/pg" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive chroot "$WORK/pg" apt-get install -y -qq --no-install-recommends postgresql-15 >&2
  chroot "$WORK/pg" apt-get clean
  rm -rf "$WORK/pg"/var/lib/apt/lists/*
  install -m 0755 "$ROOT/deploy/airgap/postgres-entrypoint.sh" "$WORK/pg/usr/local/bin/docker-entrypoint.sh"
  mkdir -p "$WORK/pg/var/lib/postgresql/data" "$WORK/pg/var/run/postgresql"
  chroot "$WORK/pg" chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql
  import_rootfs "$WORK/pg" perfnode/postgres:15-bookworm \
    'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    'ENV PGDATA=/var/lib/postgresql/data' 'VOLUME /var/lib/postgresql/data' 'EXPOSE 5432' \
    'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' 'CMD ["postgres"]'
fi

# The Python packages, as wheels for the image's Python (Debian 12: CPython 3.11, glibc 2.36).
say "building the wheelhouse in deploy/wheelhouse"
"$PYTHON" -m pip wheel -q --wheel-dir "$ROOT/deploy/wheelhouse" "$ROOT[postgres]" "setuptools>=68" wheel >&2
rm -f "$ROOT"/deploy/wheelhouse/perfnode-*.whl  # the image installs perfnode itself from the source
say "wheelhouse: $(find "$ROOT/deploy/wheelhouse" -name '*.whl' | wc -l) wheels, $(du -sh "$ROOT/deploy/wheelhouse" | cut -f1)"

if [ -n "$SAVE" ]; then
  docker save -o "$SAVE" perfnode/node-base:bookworm perfnode/postgres:15-bookworm
  say "saved the base images to $SAVE ($(du -h "$SAVE" | cut -f1)); carry it and deploy/wheelhouse to the site"
fi
say "ready: docker-compose -f docker-compose.yml -f docker-compose.airgap.yml up -d --build"
