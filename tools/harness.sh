#!/usr/bin/env bash
# Prepares (idempotently) everything the demo and the tests need on a Debian 12 machine:
# system packages, a Docker engine without bridge networking, a Python virtualenv with modelci,
# gitlab-ci-local, and the locally built base images. Safe to run again; each step is skipped
# when already done. Usage: tools/harness.sh [--no-images]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${MODELCI_STATE_DIR:-$ROOT/.modelci-local}"
VENV="${MODELCI_VENV:-$ROOT/.venv}"
BASE_IMAGE="${MODELCI_BASE_IMAGE:-local/python:3.11-bookworm}"
HELPER_IMAGE="${MODELCI_HELPER_IMAGE:-local/ci-helper:bookworm}"
GCL_VERSION="4.72.0"
mkdir -p "$STATE"

log() { printf '\033[36m[harness]\033[0m %s\n' "$*" >&2; }
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"

need_pkgs=()
command -v dockerd >/dev/null || need_pkgs+=(docker.io)
command -v docker-registry >/dev/null || need_pkgs+=(docker-registry)
command -v debootstrap >/dev/null || need_pkgs+=(debootstrap)
command -v rsync >/dev/null || need_pkgs+=(rsync)
command -v htpasswd >/dev/null || need_pkgs+=(apache2-utils)
command -v git >/dev/null || need_pkgs+=(git)
command -v node >/dev/null || need_pkgs+=(nodejs npm)
command -v make >/dev/null || need_pkgs+=(make)
command -v shellcheck >/dev/null || need_pkgs+=(shellcheck)
command -v sshd >/dev/null || [ -x /usr/sbin/sshd ] || need_pkgs+=(openssh-server)
# the namespaced deploy host of the tests (tools/remotehost.py): ip, nsenter, openssl, ssh-keygen
command -v ip >/dev/null || need_pkgs+=(iproute2)
command -v nsenter >/dev/null || need_pkgs+=(util-linux)
command -v openssl >/dev/null || need_pkgs+=(openssl)
command -v ssh-keygen >/dev/null || need_pkgs+=(openssh-client)
python3 -c 'import ensurepip, venv' 2>/dev/null || need_pkgs+=(python3-venv)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  log "installing system packages: ${need_pkgs[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

# A `git` account for the local SSH git server the consumer-repository test serves includes from.
if ! id git >/dev/null 2>&1; then
  $SUDO useradd --system --shell /bin/sh --no-create-home -d / git
  $SUDO usermod -p '*' git
fi

# Docker engine: no bridge, no iptables (loopback-only machines); host networking everywhere.
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd (--bridge=none --iptables=false)"
  # a daemon killed uncleanly (e.g. when a session ended) leaves pid files that block a restart
  for pidfile in /var/run/docker.pid /var/run/docker/containerd/containerd.pid; do
    if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then $SUDO rm -f "$pidfile"; fi
  done
  $SUDO mkdir -p /var/lib/docker
  nohup $SUDO dockerd --bridge=none --iptables=false >"$STATE/dockerd.log" 2>&1 &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "harness: dockerd did not start, see $STATE/dockerd.log" >&2; exit 1; }
fi

# Python virtualenv with modelci (editable) and the test tools.
if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtualenv $VENV"
  python3 -m venv "$VENV"
fi
if [ ! -f "$VENV/.modelci-installed" ] || [ "$ROOT/pyproject.toml" -nt "$VENV/.modelci-installed" ]; then
  log "installing modelci and its dependencies into $VENV"
  "$VENV/bin/pip" install -q --upgrade pip >/dev/null
  "$VENV/bin/pip" install -q -e "${ROOT}[test]"
  touch "$VENV/.modelci-installed"
fi

# gitlab-ci-local, pinned (runs on Node 20).
GCL_DIR="$STATE/gcl"
if [ ! -x "$GCL_DIR/node_modules/.bin/gitlab-ci-local" ]; then
  log "installing gitlab-ci-local@$GCL_VERSION"
  mkdir -p "$GCL_DIR"
  (cd "$GCL_DIR" && npm install --silent --no-audit --no-fund "gitlab-ci-local@$GCL_VERSION" >/dev/null)
fi
# gitlab-ci-local needs Node >= 20; Debian 12 ships 18: bring a Node 20 binary from the npm registry.
if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ] && [ ! -x "$GCL_DIR/node_modules/.bin/node" ]; then
  log "Node $(node --version) is too old for gitlab-ci-local: installing node@20 from the npm registry"
  (cd "$GCL_DIR" && npm install --silent --no-audit --no-fund "node@20" >/dev/null)
fi
rm -f "$VENV/bin/gitlab-ci-local"
cat > "$VENV/bin/gitlab-ci-local" <<WRAP
#!/bin/sh
PATH="$GCL_DIR/node_modules/.bin:\$PATH" exec "$GCL_DIR/node_modules/.bin/gitlab-ci-local" "\$@"
WRAP
chmod +x "$VENV/bin/gitlab-ci-local"

# A real MLflow tracking server for the tests (tests/mlflow_server.py), in a virtualenv of its own:
# the fake GitLab forwards GitLab's MLflow API to it. Pinned; modelci itself does not use it.
MLFLOW_VERSION="3.17.0"
MLFLOW_VENV="${MODELCI_MLFLOW_VENV:-$STATE/mlflow-venv}"
if [ ! -x "$MLFLOW_VENV/bin/mlflow" ] || [ "$("$MLFLOW_VENV/bin/python" -c 'import mlflow; print(mlflow.__version__)' 2>/dev/null)" != "$MLFLOW_VERSION" ]; then
  log "installing mlflow==$MLFLOW_VERSION into $MLFLOW_VENV (the tests' MLflow tracking server)"
  python3 -m venv "$MLFLOW_VENV"
  "$MLFLOW_VENV/bin/pip" install -q "mlflow==$MLFLOW_VERSION" >/dev/null
fi

[ "${1:-}" = "--no-images" ] && exit 0

# Base image built locally (no remote registry can be reached): debootstrap minbase + python3.
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  log "building base image $BASE_IMAGE with debootstrap (about a minute)"
  ROOTFS="$(mktemp -d "$STATE/rootfs.XXXX")"
  $SUDO debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm "$ROOTFS" >"$STATE/debootstrap.log" 2>&1 || { echo "harness: debootstrap failed, see $STATE/debootstrap.log" >&2; exit 1; }
  # The machine's CA bundle goes into the LOCAL base image only (a proxy may sit between us and PyPI).
  $SUDO cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
  $SUDO rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
  $SUDO tar -C "$ROOTFS" -c . | docker import - "$BASE_IMAGE" >/dev/null
  $SUDO rm -rf "$ROOTFS"
fi
# Helper image for gitlab-ci-local's Docker executor: needs bash and rsync.
if ! docker image inspect "$HELPER_IMAGE" >/dev/null 2>&1; then
  log "building helper image $HELPER_IMAGE"
  printf 'FROM %s\nRUN apt-get update -qq && apt-get install -y -qq --no-install-recommends rsync git >/dev/null && rm -rf /var/lib/apt/lists/*\n' "$BASE_IMAGE" \
    | docker build --network host -q -t "$HELPER_IMAGE" - >/dev/null
fi
log "ready: docker $(docker version -f '{{.Server.Version}}'), $(python3 --version), gitlab-ci-local $GCL_VERSION"
