#!/usr/bin/env bash
# Open MPI's rsh agent for the hosts of netns-hosts.sh: `netns-rsh.sh HOST COMMAND...` runs COMMAND
# on HOST the way ssh would (through a shell, the words joined), inside that host's namespaces.
#   mpirun --mca plm_rsh_agent scripts/cluster/netns-rsh.sh --host dpth0:2,dpth1:2 ...
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
host=$1
shift
exec "$here/netns-hosts.sh" exec "$host" sh -c "$*"
