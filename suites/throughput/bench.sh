#!/bin/bash
# The throughput suite's lab. Usage: bench.sh up-node1 | up-node2 | down
#   up-node1  iperf3 and sockperf servers in container ts (10.220.0.2) and client container tc
#             (10.220.0.3) on bridge br-t; tc also reaches node2's container through node1
#   up-node2  iperf3 and sockperf servers in container tr (10.221.2.2) behind bridge br-t2
#             (10.221.2.1)
set -euo pipefail
# The arguments (verb and count) are checked before anything touches the VM's network.
case ${1:-}:$# in
  up-node1:1 | up-node2:1 | down:1) ;;
  *) echo "usage: $0 up-node1 | up-node2 | down" >&2; exit 2 ;;
esac
. ../lib/containers.sh

other_ip() { local v="METALAB_IP_NODE$1"; echo "${!v:?the private address of the other VM}"; }

case $1 in
  up-node1)
    "$0" down
    sysctl -qw net.ipv4.ip_forward=1
    bridge_up br-t 10.220.0.1/24
    container_up ts br-t 10.220.0.2/24 10.220.0.1
    container_up tc br-t 10.220.0.3/24 10.220.0.1
    ip route replace 10.221.2.0/24 via "$(other_ip 2)"
    if [ -n "${LAB_THROTTLE:-}" ]; then
      # A planted regression: the client's link capped, for the benchmark calibration only.
      ip netns exec tc tc qdisc add dev eth0 root tbf rate "$LAB_THROTTLE" burst 256kb latency 50ms
      echo "client link capped at $LAB_THROTTLE" > "$METALAB_ARTIFACTS/throttle.txt"
    fi
    serve ts iperf3 -s
    serve ts sockperf server --tcp -i 10.220.0.2 -p 11111
    wait_port tc 10.220.0.2 5201
    ;;
  up-node2)
    "$0" down
    sysctl -qw net.ipv4.ip_forward=1
    bridge_up br-t2 10.221.2.1/24
    container_up tr br-t2 10.221.2.2/24 10.221.2.1
    ip route replace 10.220.0.0/24 via "$(other_ip 1)"
    serve tr iperf3 -s
    serve tr sockperf server --tcp -i 10.221.2.2 -p 11111
    ;;
  down)
    pkill -f 'iperf3 -s' 2>/dev/null || true
    pkill -f 'sockperf server' 2>/dev/null || true
    containers_down ts tc tr
    bridges_down br-t br-t2
    ip route del 10.221.2.0/24 2>/dev/null || true
    ip route del 10.220.0.0/24 2>/dev/null || true
    ;;
esac
