#!/usr/bin/env bash
# Installs what snapfn needs on a fresh Debian machine; fast no-op when it is all there.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v runsc >/dev/null 2>&1 || need+=(runsc)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
# The console's browser tests (test/console.e2e.test.ts) drive Debian's Chromium (fonts: readable screenshots).
# Not for `npm start` / `npm run worker`: a serving node has no use for a browser.
case "${npm_lifecycle_event:-}" in
  prestart | preworker) ;;
  *) [ -x /usr/bin/chromium ] || need+=(chromium fonts-dejavu-core) ;;
esac
# What the sandbox driver needs beyond runsc (SNAPFN_DRIVER, docs/engine.md#drivers): QEMU and the
# tools that build its guest image (scripts/build-guest.sh) for a qemu node, and for `npm test`, whose
# driver conformance suite (test/conformance/) runs on QEMU too. `auto` picks QEMU only with hardware KVM.
# Firecracker has no Debian package: docs/firecracker.md says where its binary and guest images come from.
want_qemu=
case "${SNAPFN_DRIVER:-gvisor}" in
  qemu) want_qemu=1 ;;
  auto) [ -e /dev/kvm ] && [ ! -e /sys/module/kvm_pvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo && want_qemu=1 ;;
esac
case "${npm_lifecycle_event:-}" in pretest | setup) want_qemu=1 ;; esac
if [ -n "$want_qemu" ]; then
  command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
  command -v qemu-img >/dev/null 2>&1 || need+=(qemu-utils)
  command -v mkfs.ext4 >/dev/null 2>&1 || need+=(e2fsprogs)
  command -v cpio >/dev/null 2>&1 || need+=(cpio)
  command -v lz4 >/dev/null 2>&1 || need+=(lz4)
  dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]} (apt)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  # policy-rc.d keeps the redis-server package from starting a system-wide Redis: snapfn runs its own.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
  rm -f /usr/sbin/policy-rc.d
fi

# npm ci only when the lockfile changed since the last install.
stamp=node_modules/.snapfn-lock-hash
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
  echo "$want" > "$stamp"
fi

# The UFFD page server and its test peer (C, built with the machine's compiler).
bash scripts/build-native.sh >&2
