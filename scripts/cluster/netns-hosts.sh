#!/usr/bin/env bash
# Simulated hosts on one Linux machine (root): each "host" is a network namespace with its own
# mount namespace (a private /tmp and /dev/shm) and hostname, joined to the others by a bridge that
# lives in a namespace of its own. Addresses come from 10.231.0.0/24 and exist only inside the
# namespaces; no host has a default route, so no packet can leave them (`check` verifies both).
# Open MPI reaches the hosts through netns-rsh.sh, its rsh agent (docs/cluster.md).
#
#   netns-hosts.sh up N        create hosts dpth0 .. dpth{N-1} (addresses 10.231.0.1 ..)
#   netns-hosts.sh check       the addresses are only inside, no route leads out, the hosts reach each other
#   netns-hosts.sh exec H CMD  run CMD on host H (its network, mounts and hostname)
#   netns-hosts.sh down        kill what runs on the hosts and remove them
#   netns-hosts.sh link H RATE DELAY   shape host H's link (tc tbf + netem), e.g. 10gbit 50us; RATE none: unshaped
# DPTRAIN_NETNS_PREFIX (default dpth) names the hosts; one cluster per prefix.
set -euo pipefail
prefix=${DPTRAIN_NETNS_PREFIX:-dpth}
state=/run/dptrain-cluster-$prefix
subnet=10.231.0
switch=${prefix}sw

die() { echo "netns-hosts: error: $*" >&2; exit 1; }
hosts() { [ -f "$state/hosts.list" ] && cat "$state/hosts.list"; }

cmd_up() {
  local n=$1
  [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 200 ] || die "up N: N must be 1..200, got '$n'"
  [ ! -e "$state" ] || die "$state exists: a cluster '$prefix' is up (netns-hosts.sh down first)"
  # Before anything is created: private mount namespaces must be possible (not in a chroot whose
  # root is no mount point, nor in a container without CAP_SYS_ADMIN), so a failure leaves nothing.
  local probe
  probe=$(unshare --mount --uts --propagation private true 2>&1) || die "cannot make mount namespaces here: $probe"
  mkdir -p "$state"
  ip netns add "$switch"
  ip -n "$switch" link set lo up
  ip -n "$switch" link add br0 type bridge
  ip -n "$switch" link set br0 up
  : >"$state/etc-hosts"
  echo "127.0.0.1 localhost" >>"$state/etc-hosts"
  for ((i = 0; i < n; i++)); do echo "$subnet.$((i + 1)) $prefix$i" >>"$state/etc-hosts"; done
  for ((i = 0; i < n; i++)); do
    local host=$prefix$i
    ip netns add "$host"
    # Both ends are created inside their namespaces: the host's address never exists outside.
    ip link add eth0 netns "$host" type veth peer name "port$i" netns "$switch"
    ip -n "$switch" link set "port$i" master br0 up
    ip -n "$host" link set lo up
    ip -n "$host" addr add "$subnet.$((i + 1))/24" dev eth0
    ip -n "$host" link set eth0 up
    # The host's mounts and hostname are held by a keeper process; `exec` enters its namespaces
    # through /proc (visible from every mount namespace, unlike namespace files bound after one
    # was made).
    nsenter --net="/run/netns/$host" unshare --mount --uts --propagation private \
      sh -c "mount -t tmpfs -o mode=1777 tmpfs /tmp && mount -t tmpfs -o mode=1777 tmpfs /dev/shm && \
             mount --bind '$state/etc-hosts' /etc/hosts && hostname '$host' && exec sleep infinity" \
      </dev/null >/dev/null 2>&1 &
    echo $! >"$state/$host.pid"
    echo "$host" >>"$state/hosts.list"
  done
  for host in $(hosts); do  # each keeper has set its host up once its hostname is the host's
    for _ in $(seq 100); do
      [ "$(nsenter --target "$(cat "$state/$host.pid")" --uts hostname 2>/dev/null)" = "$host" ] && break
      sleep 0.05
    done
    [ "$(nsenter --target "$(cat "$state/$host.pid")" --uts hostname 2>/dev/null)" = "$host" ] ||
      die "$host: its namespaces could not be set up"
  done
}

cmd_exec() {
  local host=$1
  shift
  grep -qx "$host" <(hosts) || die "no host '$host' (hosts: $(hosts | tr '\n' ' '))"
  # In the caller's directory when the host sees it (not one in the caller's private /tmp), else /.
  exec nsenter --target "$(cat "$state/$host.pid")" --net --mount --uts -- \
    sh -c 'cd "$1" 2>/dev/null || cd /; shift; exec "$@"' sh "$PWD" "$@"
}

cmd_check() {
  [ -d "$state" ] || die "no cluster '$prefix' is up"
  if ip -o addr show | grep -q " $subnet\."; then die "an address of $subnet.0/24 exists outside the hosts"; fi
  local first=""
  for host in $(hosts); do
    if ip -n "$host" route show default | grep -q .; then die "$host has a default route"; fi
    if ip -n "$host" route get 192.0.2.1 >/dev/null 2>&1; then die "$host has a route out of the cluster"; fi
    [ -n "$first" ] || first=$host
  done
  for host in $(hosts); do
    local address
    address=$(awk -v h="$host" '$2 == h {print $1}' "$state/etc-hosts")
    # A TCP connection to a closed port: refused at once when the host answers, a timeout when not.
    local answer
    answer=$("$0" exec "$first" timeout 3 bash -c "exec 3<>/dev/tcp/$address/9" 2>&1) || true
    [ -z "$answer" ] || [[ $answer == *refused* ]] || die "$first cannot reach $host ($address): $answer"
  done
  echo "netns-hosts: $(hosts | wc -l) hosts up, addresses only inside, no route out"
}

cmd_link() {
  local host=$1 rate=$2 delay=$3 i=${1#"$prefix"}
  if [ "$rate" = none ]; then  # back to the bare veth
    tc -n "$host" qdisc del dev eth0 root 2>/dev/null || true
    tc -n "$switch" qdisc del dev "port$i" root 2>/dev/null || true
    return
  fi
  # Both directions: the host's egress (its eth0) and its ingress (the switch port's egress).
  for where in "-n $host eth0" "-n $switch port$i"; do
    # shellcheck disable=SC2086
    set -- $where
    if tc "$1" "$2" qdisc replace dev "$3" root handle 1: netem delay "$delay" 2>/dev/null; then
      tc "$1" "$2" qdisc replace dev "$3" parent 1: handle 2: tbf rate "$rate" burst 1mb latency 50ms
    else  # a kernel without sch_netem (e.g. some VMs): the rate only
      tc "$1" "$2" qdisc replace dev "$3" root handle 2: tbf rate "$rate" burst 1mb latency 50ms
      no_delay=1
    fi
  done
  [ -z "${no_delay:-}" ] || echo "netns-hosts: this kernel has no netem: $host's link is limited to $rate, without the $delay delay" >&2
}

cmd_down() {
  for host in $(hosts); do
    [ -f "$state/$host.pid" ] && kill -KILL "$(cat "$state/$host.pid")" 2>/dev/null || true
  done
  for host in $(hosts) "$switch"; do
    [ -e "/run/netns/$host" ] || continue
    for pid in $(ip netns pids "$host" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns del "$host" 2>/dev/null || true
  done
  rm -rf "$state"
}

case "${1:-}" in
  up) [ $# = 2 ] || die "usage: up N"; cmd_up "$2" ;;
  check) cmd_check ;;
  exec) [ $# -ge 3 ] || die "usage: exec HOST CMD..."; shift; cmd_exec "$@" ;;
  link) [ $# = 4 ] || die "usage: link HOST RATE DELAY"; shift; cmd_link "$@" ;;
  down) cmd_down ;;
  *) die "usage: netns-hosts.sh up N | check | exec HOST CMD... | link HOST RATE DELAY | down" ;;
esac
