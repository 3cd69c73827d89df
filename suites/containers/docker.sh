#!/bin/bash
# The containers suite's lab: Docker containers from the netbox image (metalab loads it into
# both VMs before setup and starts Docker there). Usage:
#   docker.sh up-node1   networks front (172.31.1.0/24) and back (172.31.11.0/24); containers
#                        a1 and a2 on front, b1 on back; a route to node2's front network
#   docker.sh up-node2   network front (172.31.2.0/24); container web serving HTTP on 80
#                        (published as 8080), 81 (published as 8081, dropped by a DOCKER-USER
#                        rule) and 82 (not published); a route to node1's front network
#   docker.sh probe ADDRESS:PORT...   prints "open ADDRESS:PORT" or "closed ADDRESS:PORT" for each
#   docker.sh down       removes the containers, networks, routes and rules
# Every container but b1 also serves iperf3 (5201) and sockperf (11111) for the benchmarks.
#
# Both front networks are routed, not masqueraded: a container's packets cross to the other VM
# with its own address, and DOCKER-USER lets the two front networks reach each other (Docker
# drops forwarded packets to a container unless a port is published).
set -euo pipefail
case ${1:-}:$# in
  up-node1:1 | up-node2:1 | down:1) ;;
  probe:*) [ $# -ge 2 ] || { echo "usage: $0 probe ADDRESS:PORT..." >&2; exit 2; } ;;
  *) echo "usage: $0 up-node1 | up-node2 | probe ADDRESS:PORT... | down" >&2; exit 2 ;;
esac

other_ip() { local v="METALAB_IP_NODE$1"; echo "${!v:?the private address of the other VM}"; }

# network NAME SUBNET: a user-defined bridge network whose containers are routed, not NATed.
network() {
  docker network create --driver bridge --subnet "$2" \
    -o com.docker.network.bridge.enable_ip_masquerade=false "$1" >/dev/null
}

# container NAME NETWORK ADDRESS [PUBLISH...] -- COMMAND...: a detached container of netbox.
# Started side by side with `&` (each `docker run` takes seconds under TCG); `started` waits for
# them all and fails if one failed.
container() {
  local name=$1 net=$2 ip=$3
  shift 3
  local publish=()
  while [ "$1" != "--" ]; do publish+=(-p "$1"); shift; done
  shift
  docker run -d --name "$name" --hostname "$name" --network "$net" --ip "$ip" \
    "${publish[@]}" netbox "$@" >/dev/null
}

started() {
  local pid failed=0
  for pid in $(jobs -p); do wait "$pid" || failed=1; done
  return "$failed"
}

# The benchmarks' servers: iperf3 and sockperf, in the background of a container's command.
SERVE='iperf3 -s -D && sockperf server --tcp -i 0.0.0.0 -p 11111 >/dev/null 2>&1 &'

# wait_port ADDRESS PORT: waits (up to 20 s) until a container's TCP port answers the VM, which
# reaches the containers on its own bridges (busybox's nc inside them has no -z).
wait_port() {
  for _ in $(seq 100); do nc -z -w 1 "$1" "$2" 2>/dev/null && return 0; sleep 0.2; done
  echo "port $1:$2 did not open" >&2; return 1
}

# A suite that starts from pristine VMs finds no container or network of an earlier suite.
nothing_left() {
  local left
  left=$(docker ps -aq; docker network ls -q --filter type=custom)
  if [ -n "$left" ]; then
    echo "containers or networks of an earlier suite are still here:" >&2
    docker ps -a >&2; docker network ls --filter type=custom >&2
    return 1
  fi
}

case $1 in
  up-node1)
    nothing_left
    network front 172.31.1.0/24
    network back 172.31.11.0/24
    container a1 front 172.31.1.11 -- sh -c "$SERVE exec sleep 86400" &
    container a2 front 172.31.1.12 -- sh -c "$SERVE exec sleep 86400" &
    container b1 back 172.31.11.11 -- sleep 86400 &
    started
    ip route replace 172.31.2.0/24 via "$(other_ip 2)"
    iptables -I DOCKER-USER -s 172.31.2.0/24 -d 172.31.1.0/24 -j ACCEPT
    wait_port 172.31.1.12 5201
    wait_port 172.31.1.12 11111
    ;;
  up-node2)
    nothing_left
    network front 172.31.2.0/24
    container web front 172.31.2.21 8080:80 8081:81 -- sh -c \
      "$SERVE echo 'served by web on node2' > /www/index.html; httpd -p 80 -h /www; httpd -p 81 -h /www; exec httpd -f -p 82 -h /www"
    ip route replace 172.31.1.0/24 via "$(other_ip 1)"
    iptables -I DOCKER-USER -s 172.31.1.0/24 -d 172.31.2.0/24 -j ACCEPT
    # The suite's own rule: nothing reaches web's port 81, published or not.
    iptables -I DOCKER-USER -d 172.31.2.21 -p tcp --dport 81 -j DROP
    for port in 80 81 82 5201 11111; do wait_port 172.31.2.21 "$port"; done
    ;;
  probe)
    shift
    for target in "$@"; do
      if nc -z -w 3 "${target%:*}" "${target##*:}" 2>/dev/null; then
        echo "open $target"
      else
        echo "closed $target"
      fi
    done
    ;;
  down)
    docker rm -f a1 a2 b1 web >/dev/null 2>&1 || true
    docker network rm front back >/dev/null 2>&1 || true
    ip route del 172.31.2.0/24 2>/dev/null || true
    ip route del 172.31.1.0/24 2>/dev/null || true
    while iptables -D DOCKER-USER -s 172.31.2.0/24 -d 172.31.1.0/24 -j ACCEPT 2>/dev/null; do :; done
    while iptables -D DOCKER-USER -s 172.31.1.0/24 -d 172.31.2.0/24 -j ACCEPT 2>/dev/null; do :; done
    while iptables -D DOCKER-USER -d 172.31.2.21 -p tcp --dport 81 -j DROP 2>/dev/null; do :; done
    ;;
esac
