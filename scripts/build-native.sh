#!/usr/bin/env bash
# Builds snapfn's native helpers:
#   native/uffd/build/uffd-server    the userfaultfd page server (one per Firecracker VM)
#   native/uffd/build/uffd-peer      a stand-in for Firecracker's snapshot load, for tests and bench
#   native/reseed/build/reseed.node  fresh randomness after a restore (loaded by envd in every sandbox)
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

# build NAME SOURCE...  (every header in $src and every file in $extra_deps counts as a dependency)
extra_deps=()
build() {
  local name=$1
  shift
  local target=$out/$name dep
  if [ -x "$target" ]; then
    local stale=0
    for dep in "$@" "$src"/*.h "$0" "${extra_deps[@]}"; do
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

# The addon links against the node that loads it (a copy of this machine's
# node runs in every sandbox): its headers, OpenSSL's included, sit next to
# the binary. -z now resolves every symbol at load, so a node without them
# fails to load the addon instead of failing later.
src=native/reseed
out=$src/build
mkdir -p "$out"
node_include=${SNAPFN_NODE_INCLUDE:-$(node -p 'require("path").resolve(process.execPath, "../../include/node")')}
if [ ! -f "$node_include/node_api.h" ] || [ ! -f "$node_include/openssl/rand.h" ]; then
  echo "build-native: node's headers (node_api.h, openssl/) are not in $node_include; set SNAPFN_NODE_INCLUDE" >&2
  exit 1
fi
cflags=(-O2 -Wall -Werror -std=gnu11 -shared -fPIC -I"$node_include" -Wl,-z,now)
extra_deps=("$(node -p 'require("fs").realpathSync(process.execPath)')")
build reseed.node "$src/addon.c" "$src/reseed.c" "$src/runner.c"
