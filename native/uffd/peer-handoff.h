/* The VMM side of the UFFD hand-off, as Firecracker does it on snapshot load. */
#ifndef SNAPFN_UFFD_PEER_HANDOFF_H
#define SNAPFN_UFFD_PEER_HANDOFF_H

#include "uffd-common.h"

struct peer_region {
	uint8_t *addr;
	uint64_t size;
	uint64_t offset; /* in the memory file */
};

/* Creates a userfaultfd with remove events enabled; *via says how
 * ("syscall", "syscall-user-mode-only" or "/dev/userfaultfd"). Exits 2 on failure. */
int peer_create_uffd(const char **via);

/* Maps each region anonymously and registers it for missing-page faults. */
void peer_map_and_register(int uffd, struct peer_region *regions, int n);

/* Places the first n pages of region r from the file with our own copy of
 * the uffd, behind the server's back: its later copies of them must meet
 * EEXIST and cope (tests only). */
void peer_self_populate(int uffd, const struct peer_region *r, const uint8_t *file_map, uint64_t n);

/* Connects to the page server (retrying until deadline_ns while it is not
 * listening yet) and sends the regions with the uffd attached. Returns the
 * connected socket, which must stay open for the peer's lifetime. */
int peer_send_handshake(const char *socket_path, int uffd, const struct peer_region *regions, int n, uint64_t deadline_ns);

/* Which page-size members the handshake carries: "both" (Firecracker >= 1.x
 * today), "page_size", "page_size_kib" (older releases) or "none" (oldest). */
extern const char *peer_page_size_fields;

#endif
