#!/usr/bin/env bash
# A 3-node Garage cluster on loopback (replication factor 3), for the S3
# tests and benchmarks. Installs Garage with cargo when missing (about 9
# minutes once per machine; ~/.cargo/bin keeps it for a reused machine).
#
#   scripts/garage.sh start [dir]   start it (idempotent), print the env file path
#   scripts/garage.sh stop  [dir]   stop it
#   scripts/garage.sh kill NODE [dir]   SIGKILL one node (1-3), for failure tests
#
# The env file (<dir>/env) holds BRCACHE_S3_ENDPOINTS (the three nodes' S3
# endpoints), BRCACHE_S3_BUCKET, BRCACHE_S3_KEY and BRCACHE_S3_SECRET.
set -euo pipefail

GARAGE_VERSION=2.5.0
action=${1:-start}
dir=${2:-${BRCACHE_GARAGE_DIR:-/tmp/brcache-garage}}
[ "$action" = kill ] && dir=${3:-${BRCACHE_GARAGE_DIR:-/tmp/brcache-garage}}
cargo_bin=${CARGO_HOME:-$HOME/.cargo}/bin
garage=$cargo_bin/garage

ensure_garage() {
  if [ -x "$garage" ] && "$garage" --version 2>/dev/null | grep -q "$GARAGE_VERSION"; then return; fi
  echo "garage: installing Garage $GARAGE_VERSION with cargo (once per machine, several minutes)" >&2
  cargo install garage --version "$GARAGE_VERSION" >&2
}

conf() { echo "$dir/node$1/garage.toml"; }
g() { local node=$1; shift; "$garage" -c "$(conf "$node")" "$@"; }

write_config() {
  local node=$1 secret=$2
  mkdir -p "$dir/node$node/meta" "$dir/node$node/data"
  cat > "$(conf "$node")" <<TOML
metadata_dir = "$dir/node$node/meta"
data_dir = "$dir/node$node/data"
db_engine = "lmdb"
replication_factor = 3
consistency_mode = "consistent"
rpc_bind_addr = "127.0.0.1:39${node}1"
rpc_public_addr = "127.0.0.1:39${node}1"
rpc_secret = "$secret"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:39${node}0"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:39${node}3"
TOML
}

running() { [ -f "$dir/node$1/pid" ] && kill -0 "$(cat "$dir/node$1/pid")" 2>/dev/null; }

start() {
  ensure_garage
  local fresh=0
  if [ ! -f "$dir/secret" ]; then
    mkdir -p "$dir"
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/secret"
    fresh=1
  fi
  local secret; secret=$(cat "$dir/secret")
  for node in 1 2 3; do
    write_config "$node" "$secret"
    if ! running "$node"; then
      RUST_LOG=warn "$garage" -c "$(conf "$node")" server > "$dir/node$node/log" 2>&1 &
      echo $! > "$dir/node$node/pid"
    fi
  done
  # Every start (not only the first) connects the nodes: a restarted node
  # does not always find its peers again by itself.
  local ids=()
  for node in 1 2 3; do
    local id=""
    for _ in $(seq 1 100); do id=$(g "$node" node id -q 2>/dev/null) && break; sleep 0.1; done
    [ -n "$id" ] || { echo "garage: node $node does not answer (see $dir/node$node/log)" >&2; exit 1; }
    ids+=("$id")
  done
  # The servers take a moment to listen: retry until each connection holds.
  for peer in 1 2; do
    local connected=0
    for _ in $(seq 1 150); do
      if g 1 node connect "${ids[$peer]}" > /dev/null 2>&1; then connected=1; break; fi
      sleep 0.2
    done
    [ "$connected" = 1 ] || { echo "garage: cannot connect the nodes (see $dir/node*/log)" >&2; exit 1; }
  done
  if [ "$fresh" = 1 ] || [ ! -f "$dir/env" ]; then
    for node in 1 2 3; do
      g 1 layout assign -z "dc$node" -c 1G "${ids[$((node - 1))]%%@*}" > /dev/null
    done
    g 1 layout apply --version 1 > /dev/null
    g 1 bucket create brcache > /dev/null
    local key; key=$(g 1 key create brcache-key)
    local key_id secret_key
    key_id=$(echo "$key" | awk '/Key ID/ {print $NF}')
    secret_key=$(echo "$key" | awk '/Secret key/ {print $NF}')
    g 1 bucket allow --read --write --owner brcache --key brcache-key > /dev/null
    cat > "$dir/env" <<ENV
BRCACHE_S3_ENDPOINTS=http://127.0.0.1:3910,http://127.0.0.1:3920,http://127.0.0.1:3930
BRCACHE_S3_BUCKET=brcache
BRCACHE_S3_KEY=$key_id
BRCACHE_S3_SECRET=$secret_key
BRCACHE_S3_REGION=garage
ENV
  fi
  # Usable when every node is healthy (quorum writes need two of three,
  # but the tests start from a whole cluster).
  for _ in $(seq 1 100); do
    if ! g 1 status 2>/dev/null | grep -q "FAILED NODES"; then break; fi
    sleep 0.1
  done
  echo "$dir/env"
}

stop() {
  for node in 1 2 3; do
    if running "$node"; then kill "$(cat "$dir/node$node/pid")" 2>/dev/null || true; fi
  done
  # Wait for them to exit, so that a start right after does not find the
  # old processes still holding the ports.
  for node in 1 2 3; do
    for _ in $(seq 1 100); do running "$node" || break; sleep 0.1; done
    if running "$node"; then kill -9 "$(cat "$dir/node$node/pid")" 2>/dev/null || true; fi
    rm -f "$dir/node$node/pid"
  done
}

case "$action" in
  start) start ;;
  stop) stop ;;
  kill) kill -9 "$(cat "$dir/node$2/pid")" ;;
  *) echo "usage: $0 start|stop|kill NODE [dir]" >&2; exit 2 ;;
esac
