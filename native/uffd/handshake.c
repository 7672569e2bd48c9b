#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "handshake.h"

/* Firecracker sends a few hundred bytes; anything near this is not a VMM. */
#define MAX_BODY 65536
/* Once connected, the body follows at once; a peer that connects and then
 * says nothing is stuck (the Firecracker docs ask handlers to time out). */
#define BODY_TIMEOUT_MS 10000

/* Set while the socket file exists, so no exit path leaves it behind. */
static const char *listening_path;

static void die(const char *what, int err)
{
	if (listening_path)
		unlink(listening_path);
	fprintf(stderr, "uffd-server: %s%s%s\n", what, err ? ": " : "", err ? strerror(err) : "");
	exit(2);
}

int handshake_listen(const char *path)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof addr.sun_path)
		die("socket path too long", 0);
	strcpy(addr.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket", errno);
	unlink(path);
	/* Only the VMM (same user) may hand us a userfaultfd. */
	mode_t old = umask(0077);
	int rc = bind(fd, (struct sockaddr *)&addr, sizeof addr);
	umask(old);
	if (rc < 0)
		die("bind", errno);
	listening_path = path;
	if (listen(fd, 1) < 0)
		die("listen", errno);
	return fd;
}

/* Waits for fd to become readable; 0 ready, -1 timeout or signal. */
static int wait_readable(int fd, int timeout_ms, volatile sig_atomic_t *stop)
{
	uint64_t deadline = timeout_ms < 0 ? 0 : now_ns() + (uint64_t)timeout_ms * 1000000ull;
	for (;;) {
		if (*stop)
			return -1;
		int left = -1;
		if (timeout_ms >= 0) {
			uint64_t now = now_ns();
			if (now >= deadline)
				return -1;
			left = (int)((deadline - now) / 1000000ull) + 1;
		}
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int r = poll(&p, 1, left);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			die("poll", errno);
	}
}

/* Reads the body until the top-level JSON array closes, picking up the fd
 * from whichever chunk carries it (a stream socket may split the body). */
static size_t read_body(int sock, char *buf, int *fd, volatile sig_atomic_t *stop)
{
	size_t len = 0;
	int depth = 0, in_string = 0, escaped = 0, started = 0;
	*fd = -1;
	while (len < MAX_BODY) {
		if (wait_readable(sock, BODY_TIMEOUT_MS, stop) < 0)
			die(*stop ? "stopped during the handshake" : "peer connected but sent no regions in time", 0);
		char cbuf[CMSG_SPACE(sizeof(int) * 4)];
		struct iovec iov = {.iov_base = buf + len, .iov_len = MAX_BODY - len};
		struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
		ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("recvmsg", errno);
		if (n == 0)
			die("peer hung up before sending its regions", 0);
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			int nfds = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			int fds[4];
			memcpy(fds, CMSG_DATA(c), (size_t)nfds * sizeof(int));
			for (int i = 0; i < nfds; i++) {
				if (*fd < 0)
					*fd = fds[i];
				else
					close(fds[i]);
			}
		}
		if (msg.msg_flags & MSG_CTRUNC)
			die("control message truncated (more fds than expected)", 0);
		for (ssize_t i = 0; i < n; i++) {
			char ch = buf[len + (size_t)i];
			if (in_string) {
				if (escaped)
					escaped = 0;
				else if (ch == '\\')
					escaped = 1;
				else if (ch == '"')
					in_string = 0;
			} else if (ch == '"') {
				in_string = 1;
			} else if (ch == '[' || ch == '{') {
				depth++, started = 1;
			} else if (ch == ']' || ch == '}') {
				depth--;
			}
		}
		len += (size_t)n;
		if (started && depth == 0)
			return len;
	}
	die("handshake body too large", 0);
	return 0;
}

static void validate(const struct handshake *hs, uint64_t mem_size)
{
	for (int i = 0; i < hs->nregions; i++) {
		const struct uffd_region *r = &hs->regions[i];
		char what[200];
		if (r->page_size & (r->page_size - 1))
			snprintf(what, sizeof what, "region %d: page size %llu is not a power of two", i, (unsigned long long)r->page_size);
		else if (r->size == 0 || (r->base | r->size | r->offset) & (r->page_size - 1))
			snprintf(what, sizeof what, "region %d: base, size or offset not aligned to its %llu-byte pages", i, (unsigned long long)r->page_size);
		else if (r->offset > mem_size || r->size > mem_size - r->offset)
			snprintf(what, sizeof what, "region %d: offset %llu + size %llu is past the end of the %llu-byte memory file", i,
				 (unsigned long long)r->offset, (unsigned long long)r->size, (unsigned long long)mem_size);
		else
			what[0] = 0;
		for (int j = 0; j < i && !what[0]; j++) {
			const struct uffd_region *q = &hs->regions[j];
			if (r->base < q->base + q->size && q->base < r->base + r->size)
				snprintf(what, sizeof what, "regions %d and %d overlap", j, i);
		}
		if (what[0])
			die(what, 0);
	}
}

void handshake_accept(int listen_fd, const char *path, int timeout_ms, volatile sig_atomic_t *stop, struct handshake *hs, uint64_t mem_size)
{
	memset(hs, 0, sizeof *hs);
	if (wait_readable(listen_fd, timeout_ms, stop) < 0) {
		if (*stop) {
			unlink(path);
			listening_path = NULL;
			return;
		}
		die("no peer connected before the accept timeout", 0);
	}
	hs->sock = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (hs->sock < 0)
		die("accept", errno);
	/* One VM per server: nobody else may connect, and a stale socket file
	 * must not outlive us. */
	close(listen_fd);
	unlink(path);
	listening_path = NULL;

	struct ucred cred;
	socklen_t clen = sizeof cred;
	if (getsockopt(hs->sock, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0)
		hs->peer_pid = cred.pid;

	char *body = malloc(MAX_BODY + 1), err[200];
	if (!body)
		die("out of memory", 0);
	size_t len = read_body(hs->sock, body, &hs->uffd, stop);
	if (hs->uffd < 0)
		die("the handshake carried no userfaultfd (SCM_RIGHTS)", 0);
	hs->nregions = json_parse_regions(body, len, hs->regions, UFFD_MAX_REGIONS, err, sizeof err);
	if (hs->nregions < 0) {
		body[len < 300 ? len : 300] = 0;
		fprintf(stderr, "uffd-server: bad handshake body (%s): %s\n", err, body);
		exit(2);
	}
	free(body);
	validate(hs, mem_size);
	/* The serve loop reads until EAGAIN; Firecracker already creates the fd
	 * non-blocking, another VMM might not. */
	int fl = fcntl(hs->uffd, F_GETFL);
	if (fl < 0 || fcntl(hs->uffd, F_SETFL, fl | O_NONBLOCK) < 0)
		die("the received fd is not usable", errno);
}
