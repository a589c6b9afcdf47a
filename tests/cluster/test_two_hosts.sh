#!/usr/bin/env bash
# `dptrain train` at 4 ranks on 2 simulated hosts x 2 ranks (scripts/cluster/netns-hosts.sh: network,
# mount and UTS namespaces, a bridge, Open MPI over TCP through netns-rsh.sh), with the model, a
# --transform and the checkpoints only in the first host's private /tmp and the data copied into
# each host's own /tmp: nothing shared between the hosts but the installed software. The job stops
# after 6 steps, resumes from its checkpoint, and must end bitwise equal to the same job run
# uninterrupted on one host (flat all-reduce); placed round-robin, where --allreduce auto picks the
# hierarchical all-reduce, within 1e-5 of it.
# Skipped (exit 77) where namespaces cannot be made (not root, no iproute2, a container without
# CAP_SYS_ADMIN). Bounded: every command under a timeout; the hosts are removed on any exit.
set -uo pipefail
: "${DPTRAIN_BIN:?set by CTest}" "${DPTRAIN_PYTHON:?set by CTest}" "${DPTRAIN_SOURCE_DIR:?set by CTest}"
root=$DPTRAIN_SOURCE_DIR
hosts_sh=$root/scripts/cluster/netns-hosts.sh
export DPTRAIN_NETNS_PREFIX=dptc$$h
skip() { echo "SKIPPED: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
ok() { echo "ok: $*"; }

[ "$(id -u)" = 0 ] || skip "simulated hosts need root (network namespaces)"
# Each simulated host mounts its own /tmp, hiding whatever lives there: dptrain must be installed
# (built) elsewhere, as software is on every real host.
for dir in "$root" "$DPTRAIN_BIN"; do
  case "$(cd "$dir" && pwd -P)/" in
    /tmp/*) skip "$dir is under /tmp, which each simulated host replaces with its own (build elsewhere to run this test)" ;;
  esac
done
for tool in ip unshare nsenter; do command -v "$tool" >/dev/null || skip "$tool is not installed (iproute2, util-linux)"; done
work=$(mktemp -d "${TMPDIR:-/tmp}/dptrain-cluster-XXXXXX")
cleanup() { "$hosts_sh" down >/dev/null 2>&1; rm -rf "$work"; }
trap cleanup EXIT
if ! setup=$(timeout 60 "$hosts_sh" up 2 2>&1); then
  skip "network namespaces cannot be made here: $(echo "$setup" | tail -1)"
fi
timeout 60 "$hosts_sh" check || fail "the simulated hosts are not isolated as promised"
on() { local host=$1; shift; timeout 300 "$hosts_sh" exec "${DPTRAIN_NETNS_PREFIX}$host" "$@"; }

# The model and a per-sample transform are made on host 0 only; every host gets its own copy of
# the data.
data=${DPTRAIN_TEST_DATA:-/usr/share/datasets/fashion-mnist}
cat >"$work/make.py" <<'PY'
import torch, torch.nn as nn
torch.manual_seed(0)
torch.jit.script(nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))).save("/tmp/net.pt")
class Dim(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 0.9
torch.jit.script(Dim()).save("/tmp/dim.pt")
PY
on 0 sh -c 'cat >/tmp/make.py' <"$work/make.py" && on 0 "$DPTRAIN_PYTHON" /tmp/make.py || fail "making the model and the transform on host 0"
for h in 0 1; do on "$h" sh -c "mkdir -p /tmp/data && cp '$data'/* /tmp/data/" || fail "copying the data to host $h"; done
on 1 test ! -e /tmp/net.pt || fail "host 1 sees host 0's /tmp"
ok "2 hosts up: private /tmp each, the model and the transform on host 0 only"

mpirun_on_hosts=("$root/scripts/dpt-mpirun" --host "${DPTRAIN_NETNS_PREFIX}0:2,${DPTRAIN_NETNS_PREFIX}1:2"
                 --mca plm_rsh_agent "$root/scripts/cluster/netns-rsh.sh"
                 --mca oob_tcp_if_include 10.231.0.0/24 --mca btl_tcp_if_include 10.231.0.0/24 -np 4)
job=(train --data /tmp/data --model /tmp/net.pt --transform /tmp/dim.pt --limit-samples 3072 --epochs 1 --batch-size 32 --optimizer adam
     --lr 0.002 --seed 5 --log-every 4 --metrics "" --checkpoint-dir /tmp/ckpt --checkpoint-every 3 --allreduce flat)
out=$(on 0 "${mpirun_on_hosts[@]}" "$DPTRAIN_BIN/dptrain" "${job[@]}" --stop-after-steps 6 2>&1) ||
  { echo "$out"; fail "the 2-host job (first 6 steps)"; }
echo "$out" | grep -q "4 rank(s)" || { echo "$out"; fail "the job did not run on 4 ranks"; }
on 0 sh -c 'ls /tmp/ckpt/checkpoint-*.pt' >/dev/null || fail "no checkpoint on host 0"
on 1 test ! -e /tmp/ckpt || fail "host 1 has a checkpoint directory: rank 0 alone writes checkpoints"
ok "stopped after 6 steps; checkpoints on host 0 only"
out=$(on 0 "${mpirun_on_hosts[@]}" "$DPTRAIN_BIN/dptrain" "${job[@]}" --resume latest --out /tmp/trained.pt 2>&1) ||
  { echo "$out"; fail "the 2-host job (resumed)"; }
on 0 cat /tmp/trained.pt >"$work/two_hosts.pt" || fail "reading the trained model from host 0"
on 0 cat /tmp/net.pt >"$work/net.pt"
on 0 cat /tmp/dim.pt >"$work/dim.pt"
on 1 test ! -e /tmp/trained.pt || fail "host 1 has the trained model"
ok "resumed on 2 hosts from host 0's checkpoint"

# The same job on one host, uninterrupted.
cd "$work" || exit 1
out=$(timeout 300 "$root/scripts/dpt-mpirun" -np 4 "$DPTRAIN_BIN/dptrain" train --data "$data" --model net.pt --transform dim.pt \
      --limit-samples 3072 --epochs 1 --batch-size 32 --optimizer adam --lr 0.002 --seed 5 --metrics "" \
      --out one_host.pt 2>&1) || { echo "$out"; fail "the one-host job"; }
"$DPTRAIN_PYTHON" - <<'PY' || fail "the 2-host run differs from the one-host run"
import torch
a, b = torch.jit.load("two_hosts.pt").state_dict(), torch.jit.load("one_host.pt").state_dict()
initial = torch.jit.load("net.pt").state_dict()
assert any(not torch.equal(a[k], initial[k]) for k in a), "training changed nothing"
different = [k for k in b if not torch.equal(a[k], b[k])]
assert not different, f"parameters differ: {different}"
PY
ok "2 hosts x 2 ranks, stopped and resumed, equals 1 host x 4 ranks bitwise (flat all-reduce)"

# The hierarchical all-reduce, which --allreduce auto picks for 2 hosts x 2 ranks placed
# round-robin (--map-by node): the same training within float rounding (its sums run in another order).
out=$(on 0 "${mpirun_on_hosts[@]}" --map-by node "$DPTRAIN_BIN/dptrain" train --data /tmp/data --model /tmp/net.pt \
      --transform /tmp/dim.pt --limit-samples 3072 --epochs 1 --batch-size 32 --optimizer adam --lr 0.002 --seed 5 \
      --metrics "" --out /tmp/hierarchical.pt 2>&1) || { echo "$out"; fail "the 2-host job, hierarchical"; }
echo "$out" | grep -q "all-reduced hierarchically: 2 hosts x 2 ranks" || { echo "$out"; fail "auto did not choose hierarchical"; }
on 0 cat /tmp/hierarchical.pt >"$work/hierarchical.pt"
"$DPTRAIN_PYTHON" - <<'PY' || fail "the hierarchical run is not the one-host run within 1e-5"
import torch
a, b = torch.jit.load("hierarchical.pt").state_dict(), torch.jit.load("one_host.pt").state_dict()
worst = max(((a[k] - b[k]).abs().max() / b[k].abs().max().clamp_min(1)).item() for k in b)
print(f"max relative difference {worst:.1e}")
assert worst < 1e-5
PY
ok "2 hosts x 2 ranks round-robin, hierarchical all-reduce (auto), equals 1 host x 4 ranks within 1e-5"
