#!/bin/bash
# The policy suite's lab. Usage: policy.sh up | probe-denied | down
set -euo pipefail
# The arguments (verb and count) are checked before anything touches the VM's network.
case ${1:-}:$# in
  up:1 | probe-denied:1 | down:1) ;;
  *) echo "usage: $0 up | probe-denied | down" >&2; exit 2 ;;
esac
. ../lib/containers.sh

case $1 in
  up)
    "$0" down
    bridge_up br-p
    container_up srv br-p 10.210.0.2/24
    container_up cli br-p 10.210.0.3/24
    serve srv nc -lk 8080
    serve srv nc -lk 9090
    inside srv nft -f ./policy.nft
    wait_port srv 127.0.0.1 8080
    wait_port srv 127.0.0.1 9090
    inside srv nft list ruleset > "$METALAB_ARTIFACTS/ruleset.nft"
    ;;
  probe-denied)
    # Dropped means no answer at all: a timeout, not "connection refused".
    start=$(date +%s)
    if out=$(inside cli nc -z -v -w 3 10.210.0.2 9090 2>&1); then echo "$out"; exit 1; fi
    echo "$out"
    if echo "$out" | grep -q refused; then exit 1; fi
    echo "dropped: no answer within $(( $(date +%s) - start )) s"
    ;;
  down)
    pkill -f 'nc -lk (8080|9090)' 2>/dev/null || true
    containers_down srv cli
    bridges_down br-p
    ;;
esac
