#!/usr/bin/env bash
# Builds the QEMU guest image into OUT_DIR (kernel, initramfs, root filesystem).
#   scripts/build-guest.sh OUT_DIR BASE_ROOTFS_DIR KERNEL_PACKAGE
# BASE_ROOTFS_DIR is the gVisor driver's base rootfs (node, its libraries,
# envd): the guest runs exactly the same node and envd. The caller
# (src/sandbox/qemu/guest-image.ts) names OUT_DIR by a content hash of this
# script, runtime/guest/*, the base rootfs hash and the kernel package, and
# only publishes OUT_DIR once this script succeeded.
set -euo pipefail
OUT=$1
BASE=$2
KPKG=$3
HERE=$(cd "$(dirname "$0")/.." && pwd)

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v qemu-img >/dev/null || need+=(qemu-utils)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
command -v cpio >/dev/null || need+=(cpio)
command -v lz4 >/dev/null || need+=(lz4)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >&2
fi
BUSYBOX=/bin/busybox

WORK=$(mktemp -d)
chmod 755 "$WORK" # apt-get download drops privileges to _apt
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"

# --- kernel: the package's files only, never installed on the host ---------
(cd "$WORK" && apt-get download "$KPKG" >&2)
dpkg-deb -x "$WORK"/"$KPKG"_*.deb "$WORK/k"
KVER=${KPKG#linux-image-}
MODDIR="$WORK/k/lib/modules/$KVER/kernel"
# QEMU boots an ELF vmlinux through PVH, faster than the bzImage real-mode
# path. Debian's cloud kernel is LZ4-compressed (CONFIG_KERNEL_LZ4): find the
# LZ4 legacy-frame magic 02 21 4c 18 in the bzImage and decompress from there
# (what the kernel's scripts/extract-vmlinux does); lz4 stops at the frame end.
BZ="$WORK/k/boot/vmlinuz-$KVER"
grep -q '^CONFIG_KERNEL_LZ4=y' "$WORK/k/boot/config-$KVER" || { echo "expected an LZ4 kernel" >&2; exit 1; }
for off in $(LC_ALL=C grep -obUaP '\x02\x21\x4c\x18' "$BZ" | cut -d: -f1); do
  tail -c +$((off + 1)) "$BZ" | lz4 -dc > "$WORK/vmlinux" 2>/dev/null || true
  if [ "$(head -c 4 "$WORK/vmlinux" | od -An -tx1 | tr -d ' ')" = "7f454c46" ]; then break; fi
done
[ "$(head -c 4 "$WORK/vmlinux" | od -An -tx1 | tr -d ' ')" = "7f454c46" ] || { echo "no ELF vmlinux inside $BZ" >&2; exit 1; }
cp "$WORK/vmlinux" "$OUT/vmlinux"

# --- initramfs: busybox + the virtio modules, then switch_root -------------
# microvm's devices are virtio-mmio, all built as modules in this kernel.
# Order = dependency order (from each module's modinfo "depends=").
MODS="virtio_ring:drivers/virtio virtio:drivers/virtio virtio_mmio:drivers/virtio virtio_blk:drivers/block virtio_console:drivers/char failover:net/core net_failover:drivers/net virtio_net:drivers/net"
I="$WORK/initramfs"
mkdir -p "$I/bin" "$I/lib/modules" "$I/dev" "$I/proc" "$I/sys" "$I/newroot"
cp "$BUSYBOX" "$I/bin/busybox"
order=""
for entry in $MODS; do
  name=${entry%%:*}; dir=${entry#*:}
  f="$MODDIR/$dir/$name.ko"
  [ -f "$f" ] || { echo "module $f missing" >&2; exit 1; }
  cp "$f" "$I/lib/modules/"
  order="$order $name"
done
echo "$order" > "$I/lib/modules/order"
cp "$HERE/runtime/guest/initramfs-init" "$I/init"
chmod 755 "$I/init" "$I/bin/busybox"
(cd "$I" && find . | cpio -o -H newc --quiet) > "$OUT/initramfs.cpio"

# --- root filesystem: base rootfs + busybox + our init, as ext4 -----------
R="$WORK/rootfs"
cp -a "$BASE" "$R"
rm -f "$R/.complete"
mkdir -p "$R/bin" "$R/sbin" "$R/proc" "$R/sys" "$R/dev" "$R/tmp" "$R/run" "$R/fn" "$R/var/log"
chmod 1777 "$R/tmp"
cp "$BUSYBOX" "$R/bin/busybox"
# A flavor's own tools win (the eval rootfs has /bin -> usr/bin with bash, dash as sh and coreutils):
# busybox only fills in what the root filesystem lacks.
for a in sh env mount mkdir sleep echo cat ip poweroff ls; do [ -e "$R/bin/$a" ] || ln -s /bin/busybox "$R/bin/$a"; done
cp "$HERE/runtime/guest/init" "$R/sbin/init"
chmod 755 "$R/sbin/init"
size_mb=$(( $(du -sm "$R" | cut -f1) + 64 ))
mkfs.ext4 -q -F -L snapfn-root -d "$R" "$OUT/rootfs.img" "${size_mb}M"
echo "$KVER" > "$OUT/kernel-version"
