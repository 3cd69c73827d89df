# shellcheck shell=bash
# Containers for the suites, as network namespaces: each joined by a veth pair to a Linux bridge.
# Source it from a suite script: . ../lib/containers.sh   (commands run as root inside a VM)

# Run rather than sourced, it would only define functions and exit 0, as if it had done something.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  echo "usage: . ${BASH_SOURCE[0]}   (from a suite script: it defines functions, it runs nothing)" >&2
  exit 2
fi

# arity MIN MAX USAGE [ARG...]: exits 2 with "usage: USAGE" unless MIN to MAX ARGs were given (an
# empty MAX: no upper bound). A helper called wrongly is a bug in the suite script: it stops before
# any `ip` command runs, with the helper's usage rather than bash's "unbound variable".
arity() {
  local min=$1 max=$2 usage=$3
  shift 3
  if (( $# < min )) || { [[ -n $max ]] && (( $# > max )); }; then
    echo "usage: $usage" >&2
    exit 2
  fi
}

# bridge_up BRIDGE [ADDRESS/PREFIX]: a bridge, with an address for the VM itself if given.
bridge_up() {
  arity 1 2 "bridge_up BRIDGE [ADDRESS/PREFIX]" "$@"
  ip link show "$1" >/dev/null 2>&1 || ip link add "$1" type bridge
  ip link set "$1" up
  if [ -n "${2:-}" ]; then ip addr replace "$2" dev "$1"; fi
}

# container_up NAME BRIDGE ADDRESS/PREFIX [GATEWAY]: a namespace with one interface on BRIDGE.
container_up() {
  arity 3 4 "container_up NAME BRIDGE ADDRESS/PREFIX [GATEWAY]" "$@"
  local name=$1 bridge=$2 addr=$3 gw=${4:-}
  ip netns add "$name"
  ip link add "v-$name" type veth peer name eth0 netns "$name"
  ip link set "v-$name" master "$bridge" up
  ip -n "$name" addr add "$addr" dev eth0
  ip -n "$name" link set eth0 up
  ip -n "$name" link set lo up
  if [ -n "$gw" ]; then ip -n "$name" route add default via "$gw"; fi
}

# containers_down NAME...: removes namespaces (their veth ends go with them); missing ones are fine.
containers_down() {
  local n
  for n in "$@"; do ip netns del "$n" 2>/dev/null || true; done
}

# bridges_down BRIDGE...
bridges_down() {
  local b
  for b in "$@"; do ip link del "$b" 2>/dev/null || true; done
}

# inside NAME COMMAND...: runs a command inside a container.
inside() {
  arity 2 "" "inside NAME COMMAND..." "$@"
  local name=$1
  shift
  ip netns exec "$name" "$@"
}

# serve NAME COMMAND...: starts a daemon inside a container, detached from the caller's session
# and output, so the calling SSH command can finish while it runs.
serve() {
  arity 2 "" "serve NAME COMMAND..." "$@"
  local name=$1
  shift
  setsid ip netns exec "$name" "$@" </dev/null >/dev/null 2>&1 &
}

# wait_port NAME ADDRESS PORT: waits (up to 10 s) until a TCP port answers from a container.
wait_port() {
  arity 3 3 "wait_port NAME ADDRESS PORT" "$@"
  for _ in $(seq 50); do inside "$1" nc -z -w 1 "$2" "$3" 2>/dev/null && return 0; sleep 0.2; done
  echo "port $2:$3 did not open" >&2; return 1
}
