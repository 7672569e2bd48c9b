/*
 * Shared by the UFFD page server and its test peer.
 *
 * One guest memory region as Firecracker describes it in the UFFD handshake:
 * `size` bytes of guest memory live at host address `base` in the VMM and at
 * `offset` in the memory file.
 */
#ifndef SNAPFN_UFFD_COMMON_H
#define SNAPFN_UFFD_COMMON_H

#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#define UFFD_MAX_REGIONS 64

struct uffd_region {
	uint64_t base;
	uint64_t size;
	uint64_t offset;
	uint64_t page_size;
};

static inline uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Pinning the handler next to the faulting thread turns every wake-up into a
 * same-CPU switch instead of a cross-CPU IPI, which is where most of the
 * per-fault latency goes on a small VM. */
static inline int pin_to_cpu(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof set, &set);
}

/* Parses Firecracker's handshake body: a JSON array of region objects.
 * Returns the number of regions, or -1 with a message in err. */
int json_parse_regions(const char *s, size_t len, struct uffd_region *out, int max, char *err, size_t errlen);

/* Parses a working-set file: either a bare JSON array of page offsets or an
 * object whose "offsets" member is that array. *out is malloc'ed.
 * Returns 0, or -1 with a message in err. */
int json_parse_offsets(const char *s, size_t len, uint64_t **out, size_t *count, char *err, size_t errlen);

#endif
