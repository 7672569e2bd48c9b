/* The server side of Firecracker's UFFD hand-off (socket, SCM_RIGHTS, regions). */
#ifndef SNAPFN_UFFD_HANDSHAKE_H
#define SNAPFN_UFFD_HANDSHAKE_H

#include <signal.h>
#include <sys/types.h>

#include "uffd-common.h"

struct handshake {
	int sock; /* the accepted connection, kept open as the liveness signal */
	int uffd;
	pid_t peer_pid;
	int nregions;
	struct uffd_region regions[UFFD_MAX_REGIONS];
};

/* Binds and listens on path (replacing a stale socket file); exits 2 on failure. */
int handshake_listen(const char *path);

/* Accepts one peer and reads its regions and userfaultfd. Validates the
 * regions against the memory file size. Exits 2 on any failure; returns
 * early (with *stop set) if a signal arrives while waiting. */
void handshake_accept(int listen_fd, const char *path, int timeout_ms, volatile sig_atomic_t *stop, struct handshake *hs, uint64_t mem_size);

#endif
