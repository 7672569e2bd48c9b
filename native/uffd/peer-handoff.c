#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "peer-handoff.h"

const char *peer_page_size_fields = "both";

static void die(const char *what, int err)
{
	fprintf(stderr, "uffd-peer: %s%s%s\n", what, err ? ": " : "", err ? strerror(err) : "");
	exit(2);
}

int peer_create_uffd(const char **via)
{
	/* Non-blocking and close-on-exec, as Firecracker creates it. */
	int flags = O_CLOEXEC | O_NONBLOCK;
	int fd = (int)syscall(SYS_userfaultfd, flags);
	*via = "syscall";
	if (fd < 0 && errno == EPERM) {
		/* vm.unprivileged_userfaultfd=0 without CAP_SYS_PTRACE: only
		 * user-mode faults may be handled. Enough for this peer, which
		 * touches memory from user space only; not enough for a VMM,
		 * whose guest memory is also touched by KVM in the kernel. */
		fd = (int)syscall(SYS_userfaultfd, flags | UFFD_USER_MODE_ONLY);
		*via = "syscall-user-mode-only";
	}
	if (fd < 0) {
		/* Kernels >= 6.1 gate userfaultfd on /dev/userfaultfd permissions instead. */
		int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
		if (dev >= 0) {
			fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
			close(dev);
			*via = "/dev/userfaultfd";
		}
	}
	if (fd < 0)
		die("cannot create a userfaultfd (syscall and /dev/userfaultfd both refused)", errno);

	struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_EVENT_REMOVE};
	if (ioctl(fd, UFFDIO_API, &api) < 0)
		die("UFFDIO_API (remove events)", errno);
	if (!(api.ioctls & (1ull << _UFFDIO_REGISTER)))
		die("the kernel offers no UFFDIO_REGISTER", 0);
	return fd;
}

void peer_map_and_register(int uffd, struct peer_region *regions, int n)
{
	for (int i = 0; i < n; i++) {
		void *p = mmap(NULL, regions[i].size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (p == MAP_FAILED)
			die("mmap of a guest region", errno);
		regions[i].addr = p;
		struct uffdio_register reg = {.range = {.start = (uint64_t)(uintptr_t)p, .len = regions[i].size}, .mode = UFFDIO_REGISTER_MODE_MISSING};
		if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0)
			die("UFFDIO_REGISTER", errno);
		if (!(reg.ioctls & (1ull << _UFFDIO_COPY)))
			die("the registered range does not support UFFDIO_COPY", 0);
	}
}

void peer_self_populate(int uffd, const struct peer_region *r, const uint8_t *file_map, uint64_t n)
{
	if (n * 4096 > r->size)
		n = r->size / 4096;
	struct uffdio_copy cp = {.dst = (uint64_t)(uintptr_t)r->addr, .src = (uint64_t)(uintptr_t)(file_map + r->offset), .len = n * 4096, .mode = 0};
	if (n && ioctl(uffd, UFFDIO_COPY, &cp) < 0)
		die("UFFDIO_COPY by the peer itself", errno);
}

static int connect_until(const char *path, uint64_t deadline_ns)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof addr.sun_path)
		die("socket path too long", 0);
	strcpy(addr.sun_path, path);
	for (;;) {
		int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (s < 0)
			die("socket", errno);
		if (connect(s, (struct sockaddr *)&addr, sizeof addr) == 0)
			return s;
		int e = errno;
		close(s);
		if ((e != ENOENT && e != ECONNREFUSED) || now_ns() > deadline_ns)
			die("cannot connect to the page server", e);
		usleep(2000);
	}
}

int peer_send_handshake(const char *socket_path, int uffd, const struct peer_region *regions, int n, uint64_t deadline_ns)
{
	/* The same body Firecracker sends: page_size_kib duplicates page_size
	 * (in bytes, despite its name) for handlers written against older releases. */
	const char *ps = strcmp(peer_page_size_fields, "both") == 0 ? ",\"page_size\":4096,\"page_size_kib\":4096"
			 : strcmp(peer_page_size_fields, "page_size") == 0 ? ",\"page_size\":4096"
			 : strcmp(peer_page_size_fields, "page_size_kib") == 0 ? ",\"page_size_kib\":4096"
									   : "";
	char body[UFFD_MAX_REGIONS * 160 + 2];
	size_t len = 0;
	body[len++] = '[';
	for (int i = 0; i < n; i++)
		len += (size_t)snprintf(body + len, sizeof body - len, "%s{\"base_host_virt_addr\":%llu,\"size\":%llu,\"offset\":%llu%s}",
					i ? "," : "", (unsigned long long)(uintptr_t)regions[i].addr, (unsigned long long)regions[i].size,
					(unsigned long long)regions[i].offset, ps);
	body[len++] = ']';

	int s = connect_until(socket_path, deadline_ns);
	char cbuf[CMSG_SPACE(sizeof(int))];
	memset(cbuf, 0, sizeof cbuf);
	struct iovec iov = {.iov_base = body, .iov_len = len};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &uffd, sizeof(int));
	ssize_t sent = sendmsg(s, &msg, MSG_NOSIGNAL);
	if (sent != (ssize_t)len)
		die("sending the handshake", sent < 0 ? errno : 0);
	return s;
}
