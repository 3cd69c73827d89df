#!/bin/bash
# The connectivity suite's networks. Usage: net.sh up-local | up-routed N | down   (N: 1 or 2)
#   up-local     bridge br-c with containers c1 (10.200.0.11) and c2 (10.200.0.12), plus an
#                isolated container "lonely" (10.200.0.13) in the same subnet but on a bridge of
#                its own
#   up-routed N  container rN (10.201.N.2) behind bridge br-r (10.201.N.1) on VM N, with a route to
#                the other VM's container subnet through the other VM's private address
set -euo pipefail
# The arguments (verb, count, N) are checked before anything touches the VM's network.
case ${1:-}:$#:${2:-} in
  up-local:1: | down:1: | up-routed:2:1 | up-routed:2:2) ;;
  *) echo "usage: $0 up-local | up-routed 1|2 | down" >&2; exit 2 ;;
esac
. ../lib/containers.sh

case $1 in
  up-local)
    "$0" down
    bridge_up br-c
    container_up c1 br-c 10.200.0.11/24
    container_up c2 br-c 10.200.0.12/24
    bridge_up br-lonely
    container_up lonely br-lonely 10.200.0.13/24
    ;;
  up-routed)
    n=$2; other=$((3 - n))
    other_ip_var="METALAB_IP_NODE$other"
    other_ip=${!other_ip_var:?the other VM\'s private address}
    sysctl -qw net.ipv4.ip_forward=1
    bridge_up br-r "10.201.$n.1/24"
    container_up "r$n" br-r "10.201.$n.2/24" "10.201.$n.1"
    ip route replace "10.201.$other.0/24" via "$other_ip"
    ip route show > "$METALAB_ARTIFACTS/routes-node$n.txt"
    ;;
  down)
    containers_down c1 c2 lonely r1 r2
    bridges_down br-c br-lonely br-r
    ip route del 10.201.1.0/24 2>/dev/null || true
    ip route del 10.201.2.0/24 2>/dev/null || true
    ;;
esac
