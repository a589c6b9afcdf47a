#!/usr/bin/env bash
# Runs the project's .ci/run on a bare Debian 12 (debootstrap minbase in a chroot, plus the CUDA toolkit
# of /usr/local/cuda bound read-only): nothing of this machine's installs is visible there, so a missing
# install step fails here instead of on a user's machine. Tests what is committed (HEAD), like CI.
# Usage (as root, from the project): ../shared/tools/fresh-machine-check.sh [LOG]   (10-30 minutes)
set -u
repo=$(git rev-parse --show-toplevel) || exit 2
log=${1:-/tmp/dpt-fresh.log}
base=/var/tmp/dpt-fresh-base root=/var/tmp/dpt-main-root
command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null || exit 2
[ -d $base ] || debootstrap --variant=minbase bookworm $base http://deb.debian.org/debian >/dev/null || { echo "debootstrap failed"; exit 2; }
umount -R $root 2>/dev/null
if grep -q " $root/" /proc/mounts; then echo "mounts left under $root; not removing it"; exit 2; fi
rm -rf $root && cp -a $base $root
cleanup() { for m in dev/shm usr/local/cuda-13.0 dev proc; do umount $root/$m 2>/dev/null; done; }
trap cleanup EXIT
mount --bind /proc $root/proc && mount --bind /dev $root/dev && mount -t tmpfs tmpfs $root/dev/shm
if [ -d /usr/local/cuda-13.0 ]; then
  mkdir -p $root/usr/local/cuda-13.0 && mount --bind -o ro /usr/local/cuda-13.0 $root/usr/local/cuda-13.0
  ln -sfn cuda-13.0 $root/usr/local/cuda
fi
cp /etc/resolv.conf $root/etc/resolv.conf
git clone -q "$repo" $root/root/project || exit 2
chroot $root /bin/bash -c "apt-get update -qq && apt-get install -y -qq git ca-certificates >/dev/null" || { echo "apt in chroot failed"; exit 2; }
# This machine may reach the package registries through its own certificate authority: give the chroot
# the same trust store (a real fresh machine trusts the registries with Debian's default store).
for f in /etc/ssl/certs/ca-certificates.crt ${SSL_CERT_FILE:-} ${PIP_CERT:-}; do
  [ -f "$f" ] && mkdir -p "$root$(dirname "$f")" && cp -L "$f" "$root$f"
done
[ -f /etc/pip.conf ] && cp /etc/pip.conf $root/etc/pip.conf
echo "running .ci/run on a bare Debian 12; log: $log"
chroot $root /bin/bash -c 'cd /root/project && start=$(date +%s); bash scripts/run-main-job.sh; rc=$?; echo "main-job wall $(( $(date +%s) - start )) s"; exit $rc' >"$log" 2>&1; rc=$?
tail -5 "$log"; echo "exit code: $rc"
exit $rc
