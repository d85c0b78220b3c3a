/*
 * iobuf.c - memory for data buffers, in physically contiguous pieces.
 *
 * Owns: how data buffers are allocated.  Does not own: who uses them (the
 * front end's fill and hit buffers, the journal's record buffer) or
 * locking them in memory (the daemon's mlockall(MCL_ONFAULT) locks them
 * as they are faulted in, here).
 *
 * Why.  An O_DIRECT transfer is handed to the device one physical segment
 * per run of contiguous pages.  A 1 MiB buffer from malloc() is 256
 * scattered pages: 256 segments, which the block layer splits at the
 * queue's max_segments (254 on virtio-blk: 1016 KiB + 8 KiB) and which
 * take 256 of a virtqueue's descriptors, so one such request fills a
 * 256-entry ring and the next waits for it (requeued after a delay).
 * Measured on the benchmark VM: 1 MiB engine reads 8 in flight ran at
 * 0.66-0.76 GB/s from malloc'd buffers and 1.7-2.0 GB/s from huge pages,
 * against fio's 2.7-2.9 GB/s (docs/DESIGN.md, "I/O buffers").
 *
 * How.  An anonymous mapping aligned to 2 MiB, marked MADV_HUGEPAGE before
 * anything touches it, then faulted in at once: with transparent huge
 * pages enabled ("always" or "madvise") each 2 MiB of it is one physical
 * page, and a buffer inside it is one segment (two if it straddles a 2
 * MiB boundary).  Where the kernel gives no huge page (THP "never", no
 * contiguous memory free) the buffers are ordinary pages: slower, still
 * correct.  Faulted in now so that no page fault, and no allocation, waits
 * in the I/O path (the brief's memory-pressure rule).
 */
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include <hoardfs/hoard.h>

#define HUGE_SZ ((size_t)2 << 20)

static size_t round_huge(size_t n)
{
	return (n + HUGE_SZ - 1) & ~(HUGE_SZ - 1);
}

void *hoard_iobuf_alloc(size_t size)
{
	if (size == 0 || size > SIZE_MAX - 2 * HUGE_SZ)
		return NULL;
	size_t len = round_huge(size);
	uint8_t *m = mmap(NULL, len + HUGE_SZ, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return NULL;
	/* keep the 2 MiB-aligned len bytes inside, unmap the rest */
	uint8_t *a = (uint8_t *)(((uintptr_t)m + HUGE_SZ - 1) & ~(uintptr_t)(HUGE_SZ - 1));
	if (a > m)
		munmap(m, (size_t)(a - m));
	if (m + len + HUGE_SZ > a + len)
		munmap(a + len, (size_t)(m + len + HUGE_SZ - (a + len)));
	(void)madvise(a, len, MADV_HUGEPAGE); /* advice: without it, small pages */
	memset(a, 0, size);
	return a;
}

void hoard_iobuf_free(void *p, size_t size)
{
	if (p && size)
		munmap(p, round_huge(size));
}
