/*
 * Resolving userfaults from the memory file.
 *
 * The server keeps its own record of which pages it has placed. It is the
 * only writer of missing pages (a registered page can only become present
 * through us), so the record lets it skip pages that are already there
 * without an ioctl, record the working set in first-fault order, and know
 * that a page dropped by a remove event (balloon, MADV_DONTNEED) must come
 * back as zeros rather than as stale snapshot contents.
 */
#include <errno.h>
#include <linux/userfaultfd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "pager.h"

enum { MISSING = 0, PRESENT = 1, REMOVED = 2, STATE_MASK = 3, RECORDED = 0x80 };

void pager_init(struct pager *pg, int uffd, const struct uffd_region *regions, int n, const uint8_t *mem, uint64_t block_pages, FILE *record)
{
	memset(pg, 0, sizeof *pg);
	pg->uffd = uffd;
	pg->nregions = n;
	pg->mem = mem;
	pg->block_pages = block_pages ? block_pages : 1;
	pg->record = record;
	for (int i = 0; i < n; i++) {
		pg->regions[i] = regions[i];
		pg->state[i] = calloc(regions[i].size / regions[i].page_size, 1);
		if (!pg->state[i])
			server_fatal("out of memory for the page map of region %d", i);
	}
}

static int find_region(const struct pager *pg, uint64_t addr)
{
	for (int i = 0; i < pg->nregions; i++)
		if (addr >= pg->regions[i].base && addr - pg->regions[i].base < pg->regions[i].size)
			return i;
	return -1;
}

static void mark(struct pager *pg, int ri, uint64_t p, uint64_t n, uint8_t st)
{
	for (uint64_t i = p; i < p + n; i++)
		pg->state[ri][i] = (uint8_t)((pg->state[ri][i] & ~STATE_MASK) | st);
}

static void wake(struct pager *pg, int ri, uint64_t p)
{
	struct uffdio_range range = {.start = pg->regions[ri].base + p * pg->regions[ri].page_size, .len = pg->regions[ri].page_size};
	ioctl(pg->uffd, UFFDIO_WAKE, &range);
}

/* ESRCH: the faulting process is exiting; ENOENT: the range is no longer
 * mapped (the VMM is tearing down). Neither is an error of ours. */
static int gone(int e)
{
	return e == ESRCH || e == ENOENT;
}

/* Copies pages [p, p+n) of region ri from the file. A partial copy comes back
 * as EAGAIN with `copy` > 0 (progress: carry on); EAGAIN with nothing copied
 * means a remove/unmap event is queued and must be read first. */
static int copy_run(struct pager *pg, int ri, uint64_t p, uint64_t n)
{
	const struct uffd_region *r = &pg->regions[ri];
	while (n > 0) {
		struct uffdio_copy cp = {
			.dst = r->base + p * r->page_size,
			.src = (uint64_t)(uintptr_t)(pg->mem + r->offset + p * r->page_size),
			.len = n * r->page_size,
			.mode = 0,
		};
		pg->st.copy_ioctls++;
		if (ioctl(pg->uffd, UFFDIO_COPY, &cp) == 0) {
			mark(pg, ri, p, n, PRESENT);
			pg->st.copied_pages += n;
			return PAGER_OK;
		}
		int e = errno;
		uint64_t done = cp.copy > 0 ? (uint64_t)cp.copy / r->page_size : 0;
		if (done > 0) {
			mark(pg, ri, p, done, PRESENT);
			pg->st.copied_pages += done;
			p += done;
			n -= done;
			continue;
		}
		if (e == EEXIST) {
			/* Present without us placing it: nothing to copy, but a
			 * thread may sleep on it, and a failed copy wakes nobody. */
			pg->st.eexist++;
			mark(pg, ri, p, 1, PRESENT);
			wake(pg, ri, p);
			p++;
			n--;
			continue;
		}
		if (e == EAGAIN) {
			pg->st.eagain++;
			return PAGER_AGAIN;
		}
		if (gone(e))
			return PAGER_GONE;
		server_fatal("UFFDIO_COPY at %#llx (%llu bytes): %s", (unsigned long long)cp.dst, (unsigned long long)cp.len, strerror(e));
	}
	return PAGER_OK;
}

/* A page dropped by a remove event reads as zeros, like any freshly
 * allocated anonymous page would after MADV_DONTNEED. */
static int zero_page(struct pager *pg, int ri, uint64_t p)
{
	const struct uffd_region *r = &pg->regions[ri];
	int rc;
	if (r->page_size == (uint64_t)sysconf(_SC_PAGESIZE)) {
		struct uffdio_zeropage z = {.range = {.start = r->base + p * r->page_size, .len = r->page_size}, .mode = 0};
		rc = ioctl(pg->uffd, UFFDIO_ZEROPAGE, &z);
	} else {
		/* hugetlbfs has no ZEROPAGE: copy from a zeroed buffer instead. */
		if (!pg->zero_buf && !(pg->zero_buf = calloc(1, r->page_size)))
			server_fatal("out of memory for a zero page");
		struct uffdio_copy cp = {.dst = r->base + p * r->page_size, .src = (uint64_t)(uintptr_t)pg->zero_buf, .len = r->page_size, .mode = 0};
		rc = ioctl(pg->uffd, UFFDIO_COPY, &cp);
	}
	if (rc == 0) {
		mark(pg, ri, p, 1, PRESENT);
		pg->st.zero_pages++;
		return PAGER_OK;
	}
	int e = errno;
	if (e == EEXIST) {
		pg->st.eexist++;
		mark(pg, ri, p, 1, PRESENT);
		wake(pg, ri, p);
		return PAGER_OK;
	}
	if (e == EAGAIN) {
		pg->st.eagain++;
		return PAGER_AGAIN;
	}
	if (gone(e))
		return PAGER_GONE;
	server_fatal("zero-filling page %llu of region %d: %s", (unsigned long long)p, ri, strerror(e));
}

int pager_fault(struct pager *pg, uint64_t addr, int retry)
{
	uint64_t t0 = now_ns();
	int ri = find_region(pg, addr);
	if (ri < 0)
		server_fatal("fault at %#llx is outside every region of the handshake", (unsigned long long)addr);
	const struct uffd_region *r = &pg->regions[ri];
	uint64_t npages = r->size / r->page_size;
	uint64_t p = (addr - r->base) / r->page_size;
	uint8_t *state = pg->state[ri];
	int rc = PAGER_OK;
	if (!retry)
		pg->st.faults++;

	if ((state[p] & STATE_MASK) == MISSING && !(state[p] & RECORDED) && pg->record) {
		/* File offsets, not addresses: the VMM maps guest memory at a
		 * different host address on every resume. */
		fprintf(pg->record, "%llu\n", (unsigned long long)(r->offset + p * r->page_size));
		state[p] |= RECORDED;
		pg->st.recorded++;
	}
	switch (state[p] & STATE_MASK) {
	case PRESENT:
		pg->st.spurious++;
		wake(pg, ri, p);
		break;
	case REMOVED:
		rc = zero_page(pg, ri, p);
		break;
	default: {
		/* The missing run around p, within p's aligned block. */
		uint64_t b0 = p - p % pg->block_pages, b1 = b0 + pg->block_pages;
		if (b1 > npages)
			b1 = npages;
		uint64_t s = p, e = p + 1;
		while (s > b0 && (state[s - 1] & STATE_MASK) == MISSING)
			s--;
		while (e < b1 && (state[e] & STATE_MASK) == MISSING)
			e++;
		rc = copy_run(pg, ri, s, e - s);
	}
	}
	pg->st.fault_ns += now_ns() - t0;
	return rc;
}

void pager_remove(struct pager *pg, uint64_t start, uint64_t end)
{
	for (int ri = 0; ri < pg->nregions; ri++) {
		const struct uffd_region *r = &pg->regions[ri];
		uint64_t lo = start > r->base ? start : r->base;
		uint64_t hi = end < r->base + r->size ? end : r->base + r->size;
		if (lo >= hi)
			continue;
		uint64_t p0 = (lo - r->base) / r->page_size;
		uint64_t p1 = (hi - r->base + r->page_size - 1) / r->page_size;
		mark(pg, ri, p0, p1 - p0, REMOVED);
		pg->st.removed_pages += p1 - p0;
	}
}

void pager_set_prefetch(struct pager *pg, const uint64_t *offsets, size_t n)
{
	pg->prefetch = malloc((n ? n : 1) * sizeof *pg->prefetch);
	if (!pg->prefetch)
		server_fatal("out of memory for the working set");
	pg->prefetch_n = 0;
	for (size_t i = 0; i < n; i++) {
		int found = 0;
		for (int ri = 0; ri < pg->nregions && !found; ri++) {
			const struct uffd_region *r = &pg->regions[ri];
			if (offsets[i] < r->offset || offsets[i] - r->offset >= r->size || (offsets[i] - r->offset) % r->page_size)
				continue;
			pg->prefetch[pg->prefetch_n++] = (struct prefetch_entry){(uint32_t)ri, (offsets[i] - r->offset) / r->page_size};
			found = 1;
		}
		/* A working set recorded against another snapshot layout should
		 * cost speed, never correctness: skip what does not fit. */
		if (!found)
			pg->st.prefetch_skipped++;
	}
}

int pager_prefetch_batch(struct pager *pg, uint64_t max_pages)
{
	uint64_t budget = max_pages;
	while (budget > 0 && pager_prefetch_pending(pg)) {
		struct prefetch_entry first = pg->prefetch[pg->prefetch_next];
		if ((pg->state[first.region][first.page] & STATE_MASK) != MISSING) {
			pg->prefetch_next++;
			continue;
		}
		/* Coalesce a run of consecutive missing pages into one ioctl. */
		uint64_t n = 1;
		size_t next = pg->prefetch_next + 1;
		while (n < budget && next < pg->prefetch_n && pg->prefetch[next].region == first.region &&
		       pg->prefetch[next].page == first.page + n && (pg->state[first.region][first.page + n] & STATE_MASK) == MISSING) {
			n++;
			next++;
		}
		uint64_t before = pg->st.copied_pages;
		int rc = copy_run(pg, (int)first.region, first.page, n);
		pg->st.prefetched_pages += pg->st.copied_pages - before;
		if (rc != PAGER_OK)
			return rc; /* AGAIN: retried from the same entry next time */
		pg->prefetch_next = next;
		budget -= n;
	}
	return PAGER_OK;
}
