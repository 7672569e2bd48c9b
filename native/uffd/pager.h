/*
 * The page-serving half of the UFFD server: which guest pages are present,
 * how a fault, a remove event and a prefetch batch are resolved. The socket,
 * the event loop and the process lifecycle live in uffd-server.c.
 */
#ifndef SNAPFN_UFFD_PAGER_H
#define SNAPFN_UFFD_PAGER_H

#include "uffd-common.h"

enum pager_result { PAGER_OK = 0, PAGER_AGAIN = 1, PAGER_GONE = 2 };

struct pager_stats {
	uint64_t faults;          /* page-fault events read */
	uint64_t copied_pages;    /* pages placed by UFFDIO_COPY (faults + prefetch) */
	uint64_t copy_ioctls;
	uint64_t prefetched_pages;
	uint64_t prefetch_skipped; /* working-set offsets outside every region */
	uint64_t zero_pages;
	uint64_t removed_pages;
	uint64_t spurious;        /* fault on a page that was already present */
	uint64_t eagain;
	uint64_t eexist;
	uint64_t recorded;
	uint64_t fault_ns;        /* time spent resolving faults */
};

struct prefetch_entry {
	uint32_t region;
	uint64_t page;
};

struct pager {
	int uffd;
	int nregions;
	struct uffd_region regions[UFFD_MAX_REGIONS];
	uint8_t *state[UFFD_MAX_REGIONS]; /* one byte per page, see pager.c */
	const uint8_t *mem;
	uint64_t block_pages;
	FILE *record;
	uint8_t *zero_buf;
	struct prefetch_entry *prefetch;
	size_t prefetch_n, prefetch_next;
	struct pager_stats st;
};

/* Never returns on failure: calls server_fatal(). */
void pager_init(struct pager *pg, int uffd, const struct uffd_region *regions, int n, const uint8_t *mem, uint64_t block_pages, FILE *record);
/* Turns working-set file offsets into pages; offsets outside the regions are counted and ignored. */
void pager_set_prefetch(struct pager *pg, const uint64_t *offsets, size_t n);
/* retry: a deferred fault tried again (not counted as a new fault). */
int pager_fault(struct pager *pg, uint64_t addr, int retry);
void pager_remove(struct pager *pg, uint64_t start, uint64_t end);
/* Copies up to max_pages of the working set that are still missing. */
int pager_prefetch_batch(struct pager *pg, uint64_t max_pages);
static inline int pager_prefetch_pending(const struct pager *pg)
{
	return pg->prefetch_next < pg->prefetch_n;
}

void server_fatal(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

#endif
