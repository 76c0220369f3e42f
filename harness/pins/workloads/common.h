/* pinharness workloads: shared helpers. Every workload has one shape:
 * write pattern A to a file, map it MAP_SHARED, pin it, let the "device" write
 * pattern B, run the stressor, unpin, and print one JSON line. A page's
 * content is a 16-byte header ("PINHARNS", tag, page index) and the tag byte. */
#ifndef PH_COMMON_H
#define PH_COMMON_H
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PH_PAGE 4096UL
#define PH_FN static __attribute__((unused))
#define KPF_DIRTY 4
#define KPF_LRU 5
#define KPF_ACTIVE 6
#define KPF_WRITEBACK 8
#define KPF_MMAP 11
#define KPF_PRIVATE 35 /* buffer heads attached */

PH_FN const char *ph_arg(int argc, char **argv, const char *key, const char *def)
{
	size_t n = strlen(key);
	for (int i = 1; i < argc; i++)
		if (!strncmp(argv[i], key, n) && argv[i][n] == '=')
			return argv[i] + n + 1;
	return def;
}

PH_FN long ph_argl(int argc, char **argv, const char *key, long def)
{
	const char *v = ph_arg(argc, argv, key, NULL);
	return v ? strtol(v, NULL, 0) : def;
}

PH_FN void ph_die(const char *what)
{
	printf("{\"error\": \"%s\", \"errno\": %d, \"strerror\": \"%s\"}\n", what, errno, strerror(errno));
	fflush(stdout);
	exit(2);
}

PH_FN void ph_fill(unsigned char *page, char tag, unsigned long index)
{
	memset(page, tag, PH_PAGE);
	memcpy(page, "PINHARNS", 8);
	page[8] = (unsigned char)tag;
	memcpy(page + 9, &index, sizeof(index) > 7 ? 7 : sizeof(index));
}

/* 'A', 'B' (any tag) if the page is a whole pattern page, '0' all zeros, '?' otherwise */
PH_FN char ph_classify(const unsigned char *page)
{
	if (memcmp(page, "PINHARNS", 8) == 0) {
		char tag = (char)page[8];
		for (size_t i = 16; i < PH_PAGE; i++)
			if (page[i] != (unsigned char)tag)
				return '?';
		return tag;
	}
	for (size_t i = 0; i < PH_PAGE; i++)
		if (page[i])
			return '?';
	return '0';
}

/* PFNs of the mapping's present pages (0: not present). A held page keeps its PFN, so flags
 * sampled by PFN after reclaim describe the same page even when reclaim unmapped it from us
 * (then a sample through the mapping, ph_flags_json, reads 0). */
PH_FN void ph_pfns(void *addr, size_t pages, uint64_t *pfns)
{
	int pm = open("/proc/self/pagemap", O_RDONLY);
	for (size_t i = 0; i < pages; i++) {
		uint64_t ent = 0;
		uintptr_t va = (uintptr_t)addr + i * PH_PAGE;
		pfns[i] = pm >= 0 && pread(pm, &ent, 8, (off_t)(va / PH_PAGE) * 8) == 8 && (ent >> 63) & 1
				  ? ent & ((1ULL << 55) - 1) : 0;
	}
	if (pm >= 0)
		close(pm);
}

PH_FN uint64_t ph_pfn_flags(int kf, uint64_t pfn)
{
	uint64_t flags = 0;
	if (!pfn || kf < 0 || pread(kf, &flags, 8, (off_t)pfn * 8) != 8)
		return 0;
	return flags;
}

/* kpageflags by PFN: as a JSON array, and how many have bit set */
PH_FN size_t ph_pfn_flags_json(FILE *out, const uint64_t *pfns, size_t pages, int bit)
{
	int kf = open("/proc/kpageflags", O_RDONLY);
	size_t n = 0;
	if (out)
		fputc('[', out);
	for (size_t i = 0; i < pages; i++) {
		uint64_t flags = ph_pfn_flags(kf, pfns[i]);
		n += (flags >> bit) & 1;
		if (out)
			fprintf(out, "%s\"0x%llx\"", i ? ", " : "", (unsigned long long)flags);
	}
	if (out)
		fputc(']', out);
	if (kf >= 0)
		close(kf);
	return n;
}

/* kpageflags of each page of [addr, addr+pages*4K) as a JSON array of hex strings (0: not mapped) */
PH_FN void ph_flags_json(FILE *out, void *addr, size_t pages)
{
	uint64_t *pfns = calloc(pages, sizeof(*pfns));
	if (!pfns)
		ph_die("alloc");
	ph_pfns(addr, pages, pfns);
	ph_pfn_flags_json(out, pfns, pages, 0);
	free(pfns);
}

#define PH_VMSTAT_KEYS 6
static const char *ph_vmstat_keys[PH_VMSTAT_KEYS] = {
	"nr_foll_pin_acquired", "nr_foll_pin_released", "nr_dirty", "nr_writeback", "pgsteal_direct", "pgscan_direct"};

PH_FN void ph_vmstat(long long *vals)
{
	char key[128];
	long long v;
	FILE *f = fopen("/proc/vmstat", "r");
	for (int i = 0; i < PH_VMSTAT_KEYS; i++)
		vals[i] = -1;
	if (!f)
		return;
	while (fscanf(f, "%127s %lld", key, &v) == 2)
		for (int i = 0; i < PH_VMSTAT_KEYS; i++)
			if (!strcmp(key, ph_vmstat_keys[i]))
				vals[i] = v;
	fclose(f);
}

PH_FN void ph_vmstat_delta_json(FILE *out, const long long *a, const long long *b)
{
	fputc('{', out);
	for (int i = 0; i < PH_VMSTAT_KEYS; i++)
		fprintf(out, "%s\"%s\": %lld", i ? ", " : "", ph_vmstat_keys[i],
			(a[i] < 0 || b[i] < 0) ? 0 : b[i] - a[i]);
	fputc('}', out);
}

/* Create `path` with `pages` pages of pattern A, fsync'ed. Returns the fd (O_RDWR). */
PH_FN int ph_make_file(const char *path, size_t pages)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	unsigned char *page = aligned_alloc(PH_PAGE, PH_PAGE);
	if (fd < 0 || !page)
		ph_die("create file");
	for (size_t i = 0; i < pages; i++) {
		ph_fill(page, 'A', i);
		if (pwrite(fd, page, PH_PAGE, (off_t)(i * PH_PAGE)) != (ssize_t)PH_PAGE)
			ph_die("write pattern A");
	}
	if (fsync(fd))
		ph_die("fsync");
	free(page);
	return fd;
}

/* verify mode: read the file with O_DIRECT (bypassing the page cache) and count patterns.
 * With region_off/region_len (workloads whose device writes only part of a page, e.g.
 * AF_XDP frames), a page is 'B'/'A' when that region holds only that tag byte. */
PH_FN char ph_classify_region(const unsigned char *page, size_t off, size_t len)
{
	char tag = (char)page[off];
	if (tag != 'A' && tag != 'B')
		return '?';
	for (size_t i = off; i < off + len && i < PH_PAGE; i++)
		if (page[i] != (unsigned char)tag)
			return '?';
	return tag;
}

PH_FN int ph_verify_region(const char *path, size_t pages, size_t region_off, size_t region_len)
{
	int fd = open(path, O_RDONLY | O_DIRECT);
	unsigned char *page = aligned_alloc(PH_PAGE, PH_PAGE);
	size_t a = 0, b = 0, z = 0, other = 0, misplaced = 0;
	if (fd < 0 || !page)
		ph_die("open for verify");
	for (size_t i = 0; i < pages; i++) {
		ssize_t r = pread(fd, page, PH_PAGE, (off_t)(i * PH_PAGE));
		char c = r != (ssize_t)PH_PAGE ? '?' : region_len ? ph_classify_region(page, region_off, region_len)
								   : ph_classify(page);
		unsigned long idx = 0;
		memcpy(&idx, page + 9, 7);
		if (!region_len && (c == 'A' || c == 'B') && idx != i)
			misplaced++;
		if (c == 'A')
			a++;
		else if (c == 'B')
			b++;
		else if (c == '0')
			z++;
		else
			other++;
	}
	printf("{\"verify\": true, \"pages\": %zu, \"A\": %zu, \"B\": %zu, \"zero\": %zu, \"other\": %zu, "
	       "\"misplaced\": %zu}\n", pages, a, b, z, other, misplaced);
	return 0;
}

PH_FN int ph_verify(const char *path, size_t pages)
{
	return ph_verify_region(path, pages, 0, 0);
}

/* The arguments every workload takes: file=PATH pages=N cgroup=DIR reclaim=0|1, and
 * mode=verify, which verifies the file (region: the part of each page the device
 * writes; 0, 0 = whole pages) and exits. */
struct ph_opts {
	const char *file, *cgroup;
	size_t pages;
	int reclaim;
};

PH_FN struct ph_opts ph_opts(int argc, char **argv, size_t region_off, size_t region_len)
{
	struct ph_opts o = {ph_arg(argc, argv, "file", "/mnt/scratch/pinned"), ph_arg(argc, argv, "cgroup", NULL),
			    (size_t)ph_argl(argc, argv, "pages", 16), (int)ph_argl(argc, argv, "reclaim", 1)};
	if (!strcmp(ph_arg(argc, argv, "mode", "run"), "verify"))
		exit(ph_verify_region(o.file, o.pages, region_off, region_len));
	return o;
}

/* Setup steps after the pin: the first failure is kept (errno and what failed) for the JSON line. */
static int ph_setup_errno __attribute__((unused));
static const char *ph_setup_stage __attribute__((unused)) = "";

PH_FN int ph_step(const char *what, int ret)
{
	if (ret < 0 && !ph_setup_errno) {
		ph_setup_errno = errno ? errno : -1;
		ph_setup_stage = what;
	}
	return ret;
}

/* The start every workload shares: the file with pattern A, mapped MAP_SHARED. */
PH_FN unsigned char *ph_map_file(const char *path, size_t pages, int *fd_out)
{
	int fd = ph_make_file(path, pages);
	unsigned char *map = mmap(NULL, pages * PH_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		ph_die("mmap");
	*fd_out = fd;
	return map;
}

/* ... and the end: page flags after the unpin, then unmap, write back, close. */
PH_FN void ph_unmap_file(unsigned char *map, size_t pages, int fd)
{
	printf(", \"flags_after_unpin\": ");
	ph_flags_json(stdout, map, pages);
	munmap(map, pages * PH_PAGE);
	fsync(fd);
	close(fd);
}

/* Stressors that act on the file while the pin is held (fsfreeze, punch-hole,
 * truncate): the harness passes their shell commands in PH_WHILE_HELD and the
 * workload runs them at that moment. Prints "while_held_status" when it ran. */
PH_FN void ph_while_held(void)
{
	const char *cmd = getenv("PH_WHILE_HELD");
	if (!cmd || !*cmd)
		return;
	fflush(stdout);
	int st = system(cmd);
	printf(", \"while_held_status\": %d", st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
}

/* The stressor step every pinning workload shares while its pin is held:
 * writeback cleans the pages (fsync), then memory.reclaim of the workload's
 * cgroup (3 passes) may strip their buffers. Prints "flags_after_reclaim"; buffers are counted
 * on the pages held at the start (by PFN), mapped or not. */
struct ph_wb {
	int fsync_ret, reclaim_err;
	size_t private_before, private_after;
};

PH_FN struct ph_wb ph_writeback_and_reclaim(int fd, void *map, size_t pages, const char *cgroup, int do_reclaim)
{
	struct ph_wb wb = {0, 0, 0, 0};
	char path[512];
	uint64_t *pfns = calloc(pages, sizeof(*pfns));
	if (!pfns)
		ph_die("alloc");
	ph_pfns(map, pages, pfns);
	wb.fsync_ret = fsync(fd);
	wb.private_before = ph_pfn_flags_json(NULL, pfns, pages, KPF_PRIVATE);
	if (do_reclaim && cgroup) {
		snprintf(path, sizeof(path), "%s/memory.reclaim", cgroup);
		for (int pass = 0; pass < 3; pass++) {
			int cfd = open(path, O_WRONLY);
			if (cfd < 0 || write(cfd, "1G", 2) < 0)
				wb.reclaim_err = errno;
			if (cfd >= 0)
				close(cfd);
		}
	}
	printf(", \"flags_after_reclaim\": "); /* by the held pages' PFNs: reclaim may have unmapped them */
	wb.private_after = ph_pfn_flags_json(stdout, pfns, pages, KPF_PRIVATE);
	free(pfns);
	ph_while_held();
	return wb;
}

/* The end of a pinning workload's JSON line: the pin's errno, the first failed setup step,
 * the writeback/reclaim step, the pages the device wrote, the vmstat deltas, and the "}". */
PH_FN void ph_print_result(int pin_errno, const struct ph_wb *wb, size_t b_in_memory, const long long *vm0,
			   const long long *vm1)
{
	printf(", \"pin\": {\"errno\": %d, \"strerror\": \"%s\"}, \"setup_errno\": %d, \"setup_stage\": \"%s\", "
	       "\"fsync_ret\": %d, \"reclaim_errno\": %d, \"buffers_before_reclaim\": %zu, \"buffers_after_reclaim\": %zu, "
	       "\"device_wrote_B\": %zu, \"vmstat_delta\": ",
	       pin_errno, pin_errno ? strerror(pin_errno) : "", ph_setup_errno, ph_setup_stage, wb->fsync_ret,
	       wb->reclaim_err, wb->private_before, wb->private_after, b_in_memory);
	ph_vmstat_delta_json(stdout, vm0, vm1);
	printf("}\n");
}

PH_FN double ph_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

#endif
