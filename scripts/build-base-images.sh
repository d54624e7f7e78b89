#!/usr/bin/env bash
# Provide the base images that the Dockerfile and docker-compose.yml name (python:3.11-slim,
# redis:7.2), for a Docker engine that has no registry to pull them from.
#
# For each image: already present -> nothing to do; a registry answers -> pull it; otherwise build
# a stand-in from Debian packages: a `debootstrap --variant=minbase` root file system (cached as a
# tarball, so it is made once per machine) is imported as a Docker image, and the stand-ins are
# built on it with apt (python3 + python3-venv, or redis-server), tagged with the official names.
# The stand-ins also trust this machine's CA certificates and pass its proxy settings to pip, so
# `docker compose build` works where the host reaches PyPI through an intercepting proxy. Nothing
# of this machine goes into the project's Dockerfile or compose file.
#
#   scripts/build-base-images.sh            # idempotent: skips images that exist
#   FORCE=1 scripts/build-base-images.sh    # rebuild the stand-ins (the rootfs cache is kept)
#   NO_PULL=1 ...                           # do not try a registry first
#
# Needs: docker (a running engine), and debootstrap for the stand-ins (apt-get install debootstrap).
# Settings: BASE_IMAGE_CACHE (default ~/.cache/authscale/base-images), DEBIAN_MIRROR,
# DEBIAN_SUITE (default bookworm, the Debian release of python:3.11-slim and redis:7.2).
set -euo pipefail
cd "$(dirname "$0")/.."

SUITE=${DEBIAN_SUITE:-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${BASE_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/authscale/base-images}
ROOTFS_TAR="$CACHE/debian-$SUITE-minbase.tar"
ROOTFS_IMAGE="authscale-base/debian:$SUITE-minbase"
HOST_CA=${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
STANDIN_LABEL="org.opencontainers.image.description=authscale stand-in built from Debian packages"

# The names the project asks for, read from its own files so this script cannot drift from them.
python_image=$(awk '/^FROM / {print $2; exit}' Dockerfile)
redis_image=$(sed -nE 's/^[[:space:]]*image:[[:space:]]*"?(redis:[^"[:space:]]+)"?.*/\1/p' \
  docker-compose.yml | sort -u)
[[ -n "$python_image" && -n "$redis_image" ]] || {
  echo "could not read the base image names from Dockerfile / docker-compose.yml" >&2; exit 1; }
[[ $(wc -l <<<"$redis_image") -eq 1 ]] || {
  echo "docker-compose.yml names several redis images: $redis_image" >&2; exit 1; }

log() { printf '[base-images] %s\n' "$*"; }
have() { docker image inspect "$1" >/dev/null 2>&1; }
standin() {
  docker image inspect -f '{{json .Config.Labels}}' "$1" 2>/dev/null | grep -q 'authscale stand-in'
}

docker info >/dev/null 2>&1 || { echo "no Docker engine answers (docker info failed)" >&2; exit 1; }

# Proxy settings for apt inside the stand-in builds (Docker's predefined build arguments).
build_args=()
for var in HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy https_proxy no_proxy; do
  [[ -n "${!var:-}" ]] && build_args+=(--build-arg "$var=${!var}")
done

rootfs_image() {
  have "$ROOTFS_IMAGE" && return 0
  if [[ ! -s "$ROOTFS_TAR" ]]; then
    command -v debootstrap >/dev/null 2>&1 || {
      echo "debootstrap is needed to build stand-in base images: apt-get install -y debootstrap" >&2
      exit 1; }
    local dir
    dir=$(mktemp -d /tmp/authscale-rootfs.XXXXXX)
    log "debootstrap --variant=minbase $SUITE (once; cached in $ROOTFS_TAR)"
    debootstrap --variant=minbase "$SUITE" "$dir" "$MIRROR" >"$dir.log" 2>&1 || {
      tail -30 "$dir.log" >&2; rm -rf "$dir" "$dir.log"; exit 1; }
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
    mkdir -p "$CACHE"
    tar --numeric-owner -C "$dir" -cf "$ROOTFS_TAR.tmp" .
    mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
    rm -rf "$dir" "$dir.log"
  fi
  log "docker import $ROOTFS_TAR -> $ROOTFS_IMAGE"
  docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["bash"]' \
    "$ROOTFS_TAR" "$ROOTFS_IMAGE" >/dev/null
}

build_standin() {  # NAME, then the Dockerfile on stdin; the build context holds the host's CAs
  local name=$1 context
  context=$(mktemp -d /tmp/authscale-standin.XXXXXX)
  cat >"$context/Dockerfile"
  if [[ -r "$HOST_CA" ]]; then cp "$HOST_CA" "$context/host-ca.crt"; else : >"$context/host-ca.crt"; fi
  # pip settings for builds on the stand-in: the host's CAs, and its proxy and http(s) index.
  {
    echo "[global]"
    echo "cert = /etc/ssl/certs/ca-certificates.crt"
    local proxy=${HTTPS_PROXY:-${https_proxy:-}}
    [[ -n "$proxy" ]] && echo "proxy = $proxy"
    [[ "${PIP_INDEX_URL:-}" == http* ]] && echo "index-url = $PIP_INDEX_URL"
    local extra
    extra=$(tr ' ' '\n' <<<"${PIP_EXTRA_INDEX_URL:-}" | grep '^http' | tr '\n' ' ' || true)
    [[ -n "${extra// }" ]] && echo "extra-index-url = $extra"
  } >"$context/pip.conf"
  log "building stand-in $name"
  if ! docker build -q --label "$STANDIN_LABEL" "${build_args[@]}" -t "$name" "$context" \
      >"$context.log" 2>&1; then
    tail -30 "$context.log" >&2; rm -rf "$context" "$context.log"; exit 1
  fi
  rm -rf "$context" "$context.log"
}

provide() {  # NAME KIND
  local name=$1 kind=$2
  if have "$name" && ! { [[ -n "${FORCE:-}" ]] && standin "$name"; }; then
    log "$name present"
    return 0
  fi
  if [[ -z "${NO_PULL:-}" && -z "${FORCE:-}" ]] && timeout 300 docker pull -q "$name" >/dev/null 2>&1; then
    log "$name pulled"
    return 0
  fi
  rootfs_image
  case $kind in
    python)
      build_standin "$name" <<EOF
FROM $ROOTFS_IMAGE
ENV LANG=C.UTF-8
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
      python3 python3-venv python-is-python3 ca-certificates \\
 && rm -rf /var/lib/apt/lists/*
COPY host-ca.crt /usr/local/share/authscale/host-ca.crt
COPY pip.conf /etc/pip.conf
# The host's bundle is Debian's plus any CA the host adds (e.g. an intercepting proxy's).
RUN if [ -s /usr/local/share/authscale/host-ca.crt ]; then \\
      cp /usr/local/share/authscale/host-ca.crt /etc/ssl/certs/ca-certificates.crt; fi
CMD ["python3"]
EOF
      ;;
    redis)
      build_standin "$name" <<EOF
FROM $ROOTFS_IMAGE
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \\
 && rm -rf /var/lib/apt/lists/* \\
 && mkdir -p /data && chown redis:redis /data
WORKDIR /data
VOLUME /data
USER redis
EXPOSE 6379
# Debian's redis-server keeps protected mode on (the official image turns it off):
# docker-compose.yml passes --protected-mode no so that other containers may connect.
CMD ["redis-server", "--protected-mode", "no"]
EOF
      ;;
  esac
}

provide "$python_image" python
provide "$redis_image" redis
log "done: $python_image, $redis_image"
