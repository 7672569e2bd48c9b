#!/usr/bin/env bash
# Builds snapfn's native helpers into native/uffd/build/:
#   uffd-server  the userfaultfd page server (one per Firecracker VM)
#   uffd-peer    a stand-in for Firecracker's snapshot load, for tests and bench
# A no-op when every binary is newer than its sources and this script.
# Binaries are linked to a temporary name and renamed, so a concurrent run
# (or a test starting the server) never sees a half-written file.
set -euo pipefail
cd "$(dirname "$0")/.."

src=native/uffd
out=$src/build
cc=${CC:-cc}
cflags=(-O2 -Wall -Werror -std=gnu11 -D_GNU_SOURCE -pthread)
mkdir -p "$out"

# build NAME SOURCE...  (every header in $src counts as a dependency)
build() {
  local name=$1
  shift
  local target=$out/$name dep
  if [ -x "$target" ]; then
    local stale=0
    for dep in "$@" "$src"/*.h "$0"; do
      if [ "$dep" -nt "$target" ]; then stale=1; break; fi
    done
    [ $stale -eq 0 ] && return 0
  fi
  echo "build-native: $name" >&2
  local tmp
  tmp=$(mktemp "$out/.$name.XXXXXX")
  if ! "$cc" "${cflags[@]}" -o "$tmp" "$@"; then
    rm -f "$tmp"
    return 1
  fi
  chmod 755 "$tmp"
  mv -f "$tmp" "$target"
}

build uffd-server "$src/uffd-server.c" "$src/handshake.c" "$src/pager.c" "$src/json-lite.c"
build uffd-peer "$src/uffd-peer.c" "$src/peer-handoff.c"
