/*
 * A stand-in for Firecracker on snapshot load, to test and measure the page
 * server without KVM: map guest regions, register them with userfaultfd, hand
 * them to the server, then touch every page and check every byte against the
 * memory file.
 *
 *   uffd-peer --mem FILE [--mode uffd|private] [--socket PATH] [--regions 4m,1m,...]
 *             [--order seq|random] [--threads N] [--cpu N] [--timeout-ms N] [--seed N]
 *             [--remove-check] [--exit-after-pages N] [--pause-after-pages N]
 *             [--self-populate N] [--churn N] [--page-size-fields both|page_size|page_size_kib|none]
 *
 * --mode private maps the file MAP_PRIVATE instead (Firecracker's File memory
 * backend), for comparison. --exit-after-pages simulates a VMM dying mid-run;
 * --pause-after-pages prints "paused" and waits for a line on stdin.
 * --self-populate places N pages itself before the hand-off (the server meets
 * EEXIST); --churn N issues N single-page MADV_DONTNEEDs over the last region
 * while the others are touched, so remove events race page faults (the
 * server meets EAGAIN), like a balloon inflating during a resume.
 *
 * A watchdog stands in for the operator a real VMM lacks (a VM whose page
 * server is gone hangs forever): it fails the peer when the server's socket
 * hangs up (exit 3) or when --timeout-ms passes (exit 4). Mismatch: exit 1.
 * Result: one JSON line on stdout.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "peer-handoff.h"

#define PAGE 4096ull

static struct peer_region regions[UFFD_MAX_REGIONS];
static int nregions;
static const uint8_t *file_map;
static volatile uint8_t **touch_list; /* one address per page, in touch order */
static uint64_t npages;
static int nthreads = 1, cpu = -1, sock = -1;
static long exit_after = -1, pause_after = -1;
static uint64_t deadline_ns;
static atomic_uint_fast64_t touched;
static atomic_int done;
static pthread_barrier_t start_line;

static void usage(const char *msg)
{
	fprintf(stderr, "uffd-peer: %s\n", msg);
	exit(2);
}

static uint64_t parse_size(const char *s)
{
	char *end;
	uint64_t v = strtoull(s, &end, 10);
	if (*end == 'k' || *end == 'K')
		v <<= 10;
	else if (*end == 'm' || *end == 'M')
		v <<= 20;
	else if (*end == 'g' || *end == 'G')
		v <<= 30;
	return v;
}

static void *watchdog(void *arg)
{
	(void)arg;
	while (!atomic_load(&done)) {
		uint64_t now = now_ns();
		if (now >= deadline_ns) {
			fprintf(stderr, "uffd-peer: timed out with %llu of %llu pages touched (page server hung?)\n",
				(unsigned long long)atomic_load(&touched), (unsigned long long)npages);
			_exit(4);
		}
		int wait_ms = (int)((deadline_ns - now) / 1000000ull) + 1;
		if (sock < 0) {
			usleep(wait_ms > 50 ? 50000 : (useconds_t)wait_ms * 1000);
			continue;
		}
		struct pollfd p = {.fd = sock, .events = POLLRDHUP};
		if (poll(&p, 1, wait_ms > 50 ? 50 : wait_ms) > 0 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR)) && !atomic_load(&done)) {
			fprintf(stderr, "uffd-peer: page server went away (socket hung up) with %llu of %llu pages touched\n",
				(unsigned long long)atomic_load(&touched), (unsigned long long)npages);
			_exit(3);
		}
	}
	return NULL;
}

static void *toucher(void *arg)
{
	long t = (long)arg;
	if (cpu >= 0)
		pin_to_cpu(cpu);
	pthread_barrier_wait(&start_line);
	uint64_t sum = 0;
	for (uint64_t i = (uint64_t)t; i < npages; i += (uint64_t)nthreads) {
		sum += *touch_list[i];
		uint64_t n = atomic_fetch_add_explicit(&touched, 1, memory_order_relaxed) + 1;
		if ((long)n == exit_after)
			_exit(0); /* abrupt, like a VMM that crashes */
		if ((long)n == pause_after) {
			printf("paused\n");
			fflush(stdout);
			char line[16];
			if (!fgets(line, sizeof line, stdin))
				usage("stdin closed while paused");
		}
	}
	return (void *)(uintptr_t)(sum & 1); /* keeps the reads from being optimised away */
}

static long churn;

/* Remove events, one page at a time, cycling over the last region. */
static void *churner(void *arg)
{
	const struct peer_region *r = arg;
	for (long i = 0; i < churn; i++)
		madvise(r->addr + ((uint64_t)i * PAGE) % r->size, PAGE, MADV_DONTNEED);
	return NULL;
}

static const uint8_t zero_page[PAGE];

/* Bytes [from, to) of region ri against the file, or against zeros. */
static int verify(int ri, uint64_t from, uint64_t to, int want_zero)
{
	const uint8_t *got = regions[ri].addr;
	for (uint64_t i = from; i < to; i += PAGE) {
		uint64_t n = to - i < PAGE ? to - i : PAGE;
		const uint8_t *want = want_zero ? zero_page : file_map + regions[ri].offset + i;
		if (memcmp(got + i, want, n) == 0)
			continue;
		for (uint64_t j = 0; j < n; j++) {
			if (got[i + j] != want[j]) {
				fprintf(stderr, "uffd-peer: mismatch in region %d at byte %llu (file offset %llu): got 0x%02x, want 0x%02x\n", ri,
					(unsigned long long)(i + j), (unsigned long long)(regions[ri].offset + i + j), got[i + j], want[j]);
				return -1;
			}
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *socket_path = NULL, *mem_path = NULL, *sizes = NULL, *mode = "uffd", *order = "seq", *via = "none";
	int remove_check = 0;
	long self_populate = 0;
	long timeout_ms = 10000;
	uint64_t seed = 42;
	static const struct option opts[] = {
		{"socket", required_argument, 0, 's'}, {"mem", required_argument, 0, 'm'}, {"mode", required_argument, 0, 'M'},
		{"regions", required_argument, 0, 'r'}, {"order", required_argument, 0, 'o'}, {"threads", required_argument, 0, 'T'},
		{"cpu", required_argument, 0, 'c'}, {"timeout-ms", required_argument, 0, 't'}, {"seed", required_argument, 0, 'S'},
		{"remove-check", no_argument, 0, 'R'}, {"exit-after-pages", required_argument, 0, 'x'},
		{"pause-after-pages", required_argument, 0, 'p'}, {"self-populate", required_argument, 0, 'P'},
		{"churn", required_argument, 0, 'C'}, {"page-size-fields", required_argument, 0, 'F'}, {0, 0, 0, 0},
	};
	for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
		switch (c) {
		case 's': socket_path = optarg; break;
		case 'm': mem_path = optarg; break;
		case 'M': mode = optarg; break;
		case 'r': sizes = optarg; break;
		case 'o': order = optarg; break;
		case 'T': nthreads = atoi(optarg); break;
		case 'c': cpu = atoi(optarg); break;
		case 't': timeout_ms = atol(optarg); break;
		case 'S': seed = strtoull(optarg, NULL, 10); break;
		case 'R': remove_check = 1; break;
		case 'x': exit_after = atol(optarg); break;
		case 'p': pause_after = atol(optarg); break;
		case 'P': self_populate = atol(optarg); break;
		case 'C': churn = atol(optarg); break;
		case 'F': peer_page_size_fields = optarg; break;
		default: usage("unknown option");
		}
	}
	int uffd_mode = strcmp(mode, "uffd") == 0;
	if (!mem_path || (uffd_mode && !socket_path) || (!uffd_mode && strcmp(mode, "private")))
		usage("need --mem, and --socket in uffd mode; --mode is uffd or private");
	if (nthreads < 1 || nthreads > 64 || (nthreads > 1 && (exit_after > 0 || pause_after > 0)) || ((remove_check || churn || self_populate) && !uffd_mode))
		usage("bad --threads (1-64; 1 with --exit/--pause-after-pages), or a uffd-only option outside uffd mode");
	deadline_ns = now_ns() + (uint64_t)timeout_ms * 1000000ull;
	pthread_t dog;
	pthread_create(&dog, NULL, watchdog, NULL);

	int fd = open(mem_path, O_RDONLY | O_CLOEXEC);
	struct stat sb;
	if (fd < 0 || fstat(fd, &sb) < 0)
		usage("cannot open the memory file");
	file_map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fd, 0);
	if (file_map == MAP_FAILED)
		usage("cannot map the memory file");
	/* Regions lie back to back in the file, as in a Firecracker snapshot. */
	uint64_t off = 0;
	for (const char *p = sizes ? sizes : ""; *p && nregions < UFFD_MAX_REGIONS; nregions++) {
		regions[nregions] = (struct peer_region){.size = parse_size(p), .offset = off};
		off += regions[nregions].size;
		p = strchr(p, ',') ? strchr(p, ',') + 1 : p + strlen(p);
	}
	if (!sizes)
		regions[nregions++] = (struct peer_region){.size = (uint64_t)sb.st_size & ~(PAGE - 1), .offset = 0}, off = regions[0].size;
	for (int i = 0; i < nregions; i++)
		if (regions[i].size == 0 || regions[i].size % PAGE)
			usage("region sizes must be non-zero multiples of 4 KiB");
	if (off > (uint64_t)sb.st_size)
		usage("the regions add up to more than the memory file");

	uint64_t t0 = now_ns();
	if (uffd_mode) {
		int uffd = peer_create_uffd(&via);
		peer_map_and_register(uffd, regions, nregions);
		peer_self_populate(uffd, &regions[0], file_map, (uint64_t)self_populate);
		/* Like Firecracker we keep both the uffd and the socket open: if
		 * the server dies, faults hang instead of silently reading zeros. */
		sock = peer_send_handshake(socket_path, uffd, regions, nregions, deadline_ns);
	} else {
		for (int i = 0; i < nregions; i++) {
			void *p = mmap(NULL, regions[i].size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, (off_t)regions[i].offset);
			if (p == MAP_FAILED)
				usage("cannot map a region of the memory file");
			regions[i].addr = p;
		}
	}
	uint64_t t1 = now_ns();

	/* The churned region is neither touched nor verified: its contents are
	 * whatever the race left. */
	if (churn && nregions < 2)
		usage("--churn needs at least two regions");
	int checked = churn ? nregions - 1 : nregions;
	npages = (off - (churn ? regions[nregions - 1].size : 0)) / PAGE;
	touch_list = malloc(npages * sizeof *touch_list);
	for (int i = 0, k = 0; i < checked; i++)
		for (uint64_t b = 0; b < regions[i].size; b += PAGE)
			touch_list[k++] = regions[i].addr + b;
	if (strcmp(order, "random") == 0) {
		for (uint64_t i = npages - 1; i > 0; i--) { /* Fisher-Yates, xorshift64 */
			seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
			uint64_t j = seed % (i + 1);
			volatile uint8_t *tmp = touch_list[i];
			touch_list[i] = touch_list[j], touch_list[j] = tmp;
		}
	}
	pthread_t th[64], churn_thread;
	if (churn)
		pthread_create(&churn_thread, NULL, churner, &regions[nregions - 1]);
	pthread_barrier_init(&start_line, NULL, (unsigned)nthreads + 1);
	for (long t = 0; t < nthreads; t++)
		pthread_create(&th[t], NULL, toucher, (void *)t);
	pthread_barrier_wait(&start_line);
	uint64_t t2 = now_ns();
	for (int t = 0; t < nthreads; t++)
		pthread_join(th[t], NULL);
	uint64_t t3 = now_ns();
	if (churn)
		pthread_join(churn_thread, NULL);

	for (int i = 0; i < checked; i++)
		if (verify(i, 0, regions[i].size, 0) < 0)
			return 1;
	uint64_t removed = 0;
	if (remove_check) {
		/* Drop the middle of region 0 the way a balloon inflation does;
		 * the server must hand those pages back as zeros. */
		uint64_t from = regions[0].size >= 4 * PAGE ? PAGE : 0, to = regions[0].size / 2 > from ? regions[0].size / 2 : regions[0].size;
		if (madvise(regions[0].addr + from, to - from, MADV_DONTNEED) < 0)
			usage("madvise(MADV_DONTNEED)");
		removed = (to - from) / PAGE;
		if (verify(0, from, to, 1) < 0 || verify(0, 0, from, 0) < 0 || verify(0, to, regions[0].size, 0) < 0)
			return 1;
	}
	uint64_t t4 = now_ns();
	atomic_store(&done, 1);
	double touch_s = (double)(t3 - t2) / 1e9;
	printf("{\"mode\":\"%s\",\"uffd_via\":\"%s\",\"regions\":%d,\"pages\":%llu,\"threads\":%d,\"order\":\"%s\",\"handshake_ms\":%.3f,"
	       "\"touch_ms\":%.3f,\"pages_per_s\":%.0f,\"verify_ms\":%.3f,\"removed_pages\":%llu}\n",
	       mode, via, nregions, (unsigned long long)npages, nthreads, order, (double)(t1 - t0) / 1e6, touch_s * 1e3,
	       touch_s > 0 ? (double)npages / touch_s : 0.0, (double)(t4 - t3) / 1e6, (unsigned long long)removed);
	fflush(stdout);
	return 0;
}
