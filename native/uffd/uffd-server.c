/*
 * snapfn's UFFD page server: serves a Firecracker VM's guest memory from a
 * snapshot memory file, one process per VM.
 *
 *   uffd-server --socket PATH --mem FILE [--prefetch WORKING_SET.json]
 *               [--record FILE] [--cpu N] [--busy-poll] [--block-pages N]
 *               [--prefetch-batch N] [--populate] [--accept-timeout-ms N] [--kill-peer-on-fatal]
 *
 * Protocol (Firecracker's, see its docs/snapshotting/handling-page-faults-on-
 * snapshot-resume.md): listen on PATH, accept one connection, receive a JSON
 * array of regions with the userfaultfd attached as SCM_RIGHTS. After that the
 * socket carries nothing; it stays open as long as the VMM lives, so its
 * hang-up is how we learn the VM is gone.
 *
 * stdout: one JSON line per event (ready, connected, prefetched, exit).
 * Exit codes: 0 peer gone or SIGTERM; 1 fatal while serving; 2 bad input or
 * handshake failure.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "handshake.h"
#include "pager.h"

static volatile sig_atomic_t stop_signal;
static pid_t peer_pid;
static int kill_peer_on_fatal;

void server_fatal(const char *fmt, ...)
{
	va_list ap;
	fputs("uffd-server: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	/* A VM whose page server died hangs forever on its next fault; killing
	 * it turns a silent hang into a visible crash. */
	if (kill_peer_on_fatal && peer_pid > 0)
		kill(peer_pid, SIGKILL);
	exit(1);
}

static void on_signal(int sig)
{
	stop_signal = sig;
}

static void usage_error(const char *msg)
{
	fprintf(stderr, "uffd-server: %s\nusage: uffd-server --socket PATH --mem FILE [--prefetch FILE] [--record FILE] [--cpu N] [--busy-poll] [--block-pages N] [--prefetch-batch N] [--populate] [--accept-timeout-ms N] [--kill-peer-on-fatal]\n", msg);
	exit(2);
}

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	size_t cap = 1 << 16, n = 0, got;
	char *buf = malloc(cap);
	while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
		n += got;
		if (n == cap)
			buf = realloc(buf, cap *= 2);
	}
	fclose(f);
	*len = n;
	return buf;
}

static void print_stats(const struct pager *pg, const char *reason, uint64_t connected_ns)
{
	const struct pager_stats *s = &pg->st;
	printf("{\"event\":\"exit\",\"reason\":\"%s\",\"faults\":%llu,\"copied_pages\":%llu,\"copy_ioctls\":%llu,"
	       "\"prefetched_pages\":%llu,\"prefetch_skipped\":%llu,\"zero_pages\":%llu,\"removed_pages\":%llu,"
	       "\"spurious\":%llu,\"eagain\":%llu,\"eexist\":%llu,\"recorded\":%llu,\"fault_ns\":%llu,\"serve_ms\":%.3f}\n",
	       reason, (unsigned long long)s->faults, (unsigned long long)s->copied_pages, (unsigned long long)s->copy_ioctls,
	       (unsigned long long)s->prefetched_pages, (unsigned long long)s->prefetch_skipped, (unsigned long long)s->zero_pages,
	       (unsigned long long)s->removed_pages, (unsigned long long)s->spurious, (unsigned long long)s->eagain,
	       (unsigned long long)s->eexist, (unsigned long long)s->recorded, (unsigned long long)s->fault_ns,
	       connected_ns ? (double)(now_ns() - connected_ns) / 1e6 : 0.0);
	fflush(stdout);
}

/* Faults that hit EAGAIN (a remove event was queued) wait here until the
 * event has been read. While remove events keep coming (a balloon inflating
 * page by page) copies keep failing: the kernel refuses every copy while a
 * remove is in flight, so faults are delayed until the burst ends. */
struct deferred {
	uint64_t *addr;
	size_t n, cap;
};

static void defer(struct deferred *d, uint64_t addr)
{
	if (d->n == d->cap && !(d->addr = realloc(d->addr, (d->cap = d->cap ? d->cap * 2 : 64) * sizeof *d->addr)))
		server_fatal("out of memory for deferred faults");
	d->addr[d->n++] = addr;
}

static int retry_deferred(struct pager *pg, struct deferred *d)
{
	size_t kept = 0;
	for (size_t i = 0; i < d->n; i++) {
		int rc = pager_fault(pg, d->addr[i], 1);
		if (rc == PAGER_GONE)
			return rc;
		if (rc == PAGER_AGAIN)
			d->addr[kept++] = d->addr[i];
	}
	d->n = kept;
	return PAGER_OK;
}

/* Returns PAGER_GONE when the peer went away. */
static int handle_events(struct pager *pg, struct deferred *d, const struct uffd_msg *msgs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct uffd_msg *m = &msgs[i];
		if (m->event == UFFD_EVENT_PAGEFAULT) {
			int rc = pager_fault(pg, m->arg.pagefault.address, 0);
			if (rc == PAGER_GONE)
				return rc;
			if (rc == PAGER_AGAIN)
				defer(d, m->arg.pagefault.address);
		} else if (m->event == UFFD_EVENT_REMOVE) {
			pager_remove(pg, m->arg.remove.start, m->arg.remove.end);
		} else {
			fprintf(stderr, "uffd-server: ignoring userfaultfd event %u\n", m->event);
		}
	}
	return retry_deferred(pg, d);
}

static const char *serve(struct pager *pg, int sock, int busy_poll, uint64_t prefetch_batch, uint64_t connected_ns)
{
	struct uffd_msg msgs[64];
	struct deferred d = {0};
	uint64_t idle = 0;
	int prefetch_announced = !pager_prefetch_pending(pg);
	for (;;) {
		if (stop_signal)
			return "signal";
		ssize_t n = read(pg->uffd, msgs, sizeof msgs);
		if (n > 0) {
			if (handle_events(pg, &d, msgs, (size_t)n / sizeof msgs[0]) == PAGER_GONE)
				return "peer_gone";
			continue;
		}
		if (n == 0)
			return "uffd_closed";
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			server_fatal("reading the userfaultfd: %s", strerror(errno));
		/* Nothing queued. Faults always come first; the working set
		 * fills the gaps, one bounded batch at a time, so a faulting
		 * vCPU never waits behind more than one batch. */
		if (d.n > 0 && retry_deferred(pg, &d) == PAGER_GONE)
			return "peer_gone";
		if (pager_prefetch_pending(pg)) {
			if (pager_prefetch_batch(pg, prefetch_batch) == PAGER_GONE)
				return "peer_gone";
			continue;
		}
		if (!prefetch_announced) {
			prefetch_announced = 1;
			printf("{\"event\":\"prefetched\",\"pages\":%llu,\"skipped\":%llu,\"ms\":%.3f}\n", (unsigned long long)pg->st.prefetched_pages,
			       (unsigned long long)pg->st.prefetch_skipped, (double)(now_ns() - connected_ns) / 1e6);
			fflush(stdout);
		}
		struct pollfd fds[2] = {{.fd = pg->uffd, .events = POLLIN}, {.fd = sock, .events = POLLIN | POLLRDHUP}};
		int timeout = -1;
		if (busy_poll) {
			/* Spin on read(); look at the socket now and then. */
			if (++idle % 4096)
				continue;
			timeout = 0;
		} else if (d.n > 0) {
			timeout = 1; /* the queued remove event clears within microseconds */
		}
		int ready = poll(fds, 2, timeout);
		if (ready < 0 && errno != EINTR)
			server_fatal("poll: %s", strerror(errno));
		if (ready > 0 && (fds[1].revents & (POLLHUP | POLLRDHUP | POLLERR)))
			return "peer_gone";
		if (ready > 0 && (fds[1].revents & POLLIN)) {
			char junk[256];
			ssize_t got = recv(sock, junk, sizeof junk, MSG_DONTWAIT);
			if (got == 0)
				return "peer_gone";
		}
	}
}

int main(int argc, char **argv)
{
	const char *socket_path = NULL, *mem_path = NULL, *prefetch_path = NULL, *record_path = NULL;
	int cpu = -1, busy_poll = 0, populate = 0, accept_timeout_ms = -1;
	uint64_t block_pages = 1, prefetch_batch = 256;
	static const struct option opts[] = {
		{"socket", required_argument, 0, 's'}, {"mem", required_argument, 0, 'm'},
		{"prefetch", required_argument, 0, 'p'}, {"record", required_argument, 0, 'r'},
		{"cpu", required_argument, 0, 'c'}, {"busy-poll", no_argument, 0, 'b'},
		{"block-pages", required_argument, 0, 'k'}, {"prefetch-batch", required_argument, 0, 'B'},
		{"accept-timeout-ms", required_argument, 0, 't'}, {"kill-peer-on-fatal", no_argument, 0, 'K'},
		{"populate", no_argument, 0, 'P'},
		{0, 0, 0, 0},
	};
	for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
		switch (c) {
		case 's': socket_path = optarg; break;
		case 'm': mem_path = optarg; break;
		case 'p': prefetch_path = optarg; break;
		case 'r': record_path = optarg; break;
		case 'c': cpu = atoi(optarg); break;
		case 'b': busy_poll = 1; break;
		case 'k': block_pages = strtoull(optarg, NULL, 10); break;
		case 'B': prefetch_batch = strtoull(optarg, NULL, 10); break;
		case 't': accept_timeout_ms = atoi(optarg); break;
		case 'K': kill_peer_on_fatal = 1; break;
		case 'P': populate = 1; break;
		default: usage_error("unknown option");
		}
	}
	/* Firecracker's example handler takes `SOCKET MEMFILE`; accept that too. */
	if (!socket_path && optind < argc)
		socket_path = argv[optind++];
	if (!mem_path && optind < argc)
		mem_path = argv[optind++];
	if (!socket_path || !mem_path)
		usage_error("--socket and --mem are required");
	if (block_pages == 0 || prefetch_batch == 0)
		usage_error("--block-pages and --prefetch-batch must be positive");

	int mem_fd = open(mem_path, O_RDONLY | O_CLOEXEC);
	struct stat sb;
	if (mem_fd < 0 || fstat(mem_fd, &sb) < 0 || sb.st_size == 0)
		usage_error("cannot open the memory file (or it is empty)");
	/* Read-only and private: the file is the template's, shared by every
	 * sandbox; UFFDIO_COPY copies out of this mapping. Without --populate
	 * each copy may fault on its source page (the kernel maps 16 page-cache
	 * pages per such fault); with it the whole file is mapped up front,
	 * which costs ~11 ms per 64 MiB here and halves the cost of block copies. */
	const uint8_t *mem = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE | (populate ? MAP_POPULATE : 0), mem_fd, 0);
	if (mem == MAP_FAILED)
		usage_error("cannot mmap the memory file");

	uint64_t *offsets = NULL;
	size_t noffsets = 0;
	if (prefetch_path) {
		size_t len;
		char err[160], *text = read_file(prefetch_path, &len);
		if (!text || json_parse_offsets(text, len, &offsets, &noffsets, err, sizeof err)) {
			fprintf(stderr, "uffd-server: working set %s: %s\n", prefetch_path, text ? err : strerror(errno));
			exit(2);
		}
		free(text);
	}
	FILE *record = NULL;
	if (record_path && !(record = fopen(record_path, "w")))
		usage_error("cannot create the record file");

	struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: poll returns EINTR */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (cpu >= 0 && pin_to_cpu(cpu) < 0)
		usage_error("cannot pin to the requested CPU");

	int listen_fd = handshake_listen(socket_path);
	printf("{\"event\":\"ready\",\"socket\":\"%s\"}\n", socket_path);
	fflush(stdout);

	struct handshake hs;
	handshake_accept(listen_fd, socket_path, accept_timeout_ms, &stop_signal, &hs, (uint64_t)sb.st_size);
	if (stop_signal)
		return 0;
	peer_pid = hs.peer_pid;
	uint64_t connected_ns = now_ns(), total = 0;
	for (int i = 0; i < hs.nregions; i++)
		total += hs.regions[i].size;

	struct pager pg;
	pager_init(&pg, hs.uffd, hs.regions, hs.nregions, mem, block_pages, record);
	if (prefetch_path)
		pager_set_prefetch(&pg, offsets, noffsets);
	free(offsets);
	printf("{\"event\":\"connected\",\"regions\":%d,\"bytes\":%llu,\"peer_pid\":%d,\"prefetch_pages\":%zu}\n", hs.nregions,
	       (unsigned long long)total, (int)peer_pid, pg.prefetch_n);
	fflush(stdout);

	const char *reason = serve(&pg, hs.sock, busy_poll, prefetch_batch, connected_ns);
	if (record && fclose(record) != 0)
		server_fatal("writing the record file: %s", strerror(errno));
	print_stats(&pg, reason, connected_ns);
	return 0;
}
