#!/bin/bash
# The throughput suite's lab: an iperf3 server container and a client container on one bridge.
# Usage: bench.sh up | down
set -euo pipefail
. ../lib/containers.sh

case $1 in
  up)
    "$0" down
    bridge_up br-t
    container_up ts br-t 10.220.0.2/24
    container_up tc br-t 10.220.0.3/24
    serve ts iperf3 -s
    wait_port tc 10.220.0.2 5201
    ;;
  down)
    pkill -f 'iperf3 -s' 2>/dev/null || true
    containers_down ts tc
    bridges_down br-t
    ;;
  *) echo "usage: $0 up | down" >&2; exit 2 ;;
esac
