/* mkclean_race: writeback cleans and write-protects the PTEs of a MAP_SHARED file
 * mapping while writer threads on another CPU store into it nonstop: the dirty-bit/TLB
 * race of "mm: Add write-protect and clean utilities" (a PTE cleaned in memory can stay
 * dirty and writable in another CPU's TLB until the flush; a store through it after
 * writeback copied the page must dirty the page again, or the store never reaches the
 * disk). No pin is taken: "pin" errno is 0 and nr_foll_pin_* do not move.
 *
 * The file starts as pattern A pages (common.h). Writer threads on CPU 0 each own every
 * W-th page and store a sequence number into each of their pages (over bytes 16..23 and
 * the last 8), pass after pass. Before a store a writer checks that the page still holds
 * its previous number: a page that lost a store in memory (written back stale, evicted,
 * read back) counts as regressed. Once every page was written, a cleaner thread on CPU 1
 * loops msync(MS_SYNC), fsync, sync_file_range(WAIT_BEFORE|WRITE|WAIT_AFTER) and
 * madvise(MADV_PAGEOUT) (and memory.reclaim with reclaim=1). After seconds=S the writers
 * stop; each page's last number goes to the record file (on the root fs, next to this
 * program: not on the file system under test); fsync.
 *
 * mode=verify (after the harness's remount) reads every page with O_DIRECT and compares
 * with the record: "B" pages hold their last number, "stale" an older one, "A" still pattern
 * A's bytes (both lost stores), "regressed" lost one in memory during the run; "zero",
 * "other" (torn, unknown number, foreign bytes) and "misplaced" (another page's header).
 * "device_wrote_B" of the run is the pages written, so pages - B is the data loss.
 *
 * thp=1: the file is at least THP_PAGES pages (2 MiB), mapped 2 MiB aligned with MADV_HUGEPAGE,
 * read back from disk by faults (large folios, PMD mappings where the kernel gives them);
 * "folios" reports what the kernel gave, at the start and at the end.
 *
 * args: file=PATH pages=N seconds=S writers=W thp=0|1 cgroup=DIR reclaim=0|1 [record=PATH]
 *       mode=verify file=PATH [record=PATH]
 */
#include "common.h"
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif
#define INITIAL 0x4141414141414141ULL /* pattern A where the numbers go: not written yet */
#define SEQ_OFF 16
#define SEQ_END (PH_PAGE - 8)
#define PMD_SIZE (2UL << 20)
#define THP_PAGES 512 /* one PMD */
#define MAX_WRITERS 8
#define KPF_COMPOUND_HEAD 15
#define KPF_COMPOUND_TAIL 16
#define KPF_THP 22

static int stop;	     /* written by main, read by the threads (atomic) */
static int first_passes; /* writers done with their first pass: the cleaner starts after all (atomic) */

struct shared {
	unsigned char *map;
	size_t pages;
	int fd, writers, reclaim;
	const char *cgroup;
	uint64_t *last;	       /* per page: the last number stored (its writer's, release-stored) */
	unsigned long *regress; /* per page: stores found missing in memory */
};

struct writer {
	struct shared *s;
	int id, affinity_errno, cpu;
	unsigned long passes, writes;
	pthread_t t;
};

struct cleaner {
	struct shared *s;
	int affinity_errno, cpu;
	unsigned long cycles, pageouts;
	int msync_errno, fsync_errno, sfr_errno, pageout_errno, reclaim_errno;
	pthread_t t;
};

static int on_cpu(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set) ? errno : 0;
}

static volatile uint64_t *seq_at(unsigned char *page, size_t off)
{
	return (volatile uint64_t *)(page + off);
}

static void *writer(void *p)
{
	struct writer *w = p;
	struct shared *s = w->s;
	uint64_t seq = 0;
	w->affinity_errno = on_cpu(0);
	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
		for (size_t i = (size_t)w->id; i < s->pages; i += (size_t)s->writers) {
			if (__atomic_load_n(&stop, __ATOMIC_RELAXED))
				break;
			unsigned char *page = s->map + i * PH_PAGE;
			uint64_t want = __atomic_load_n(&s->last[i], __ATOMIC_RELAXED); /* ours: only we store it */
			want = want ? want : INITIAL;
			if (__atomic_load_n(seq_at(page, SEQ_OFF), __ATOMIC_RELAXED) != want ||
			    __atomic_load_n(seq_at(page, SEQ_END), __ATOMIC_RELAXED) != want)
				s->regress[i]++;
			seq++;
			__atomic_store_n(seq_at(page, SEQ_OFF), seq, __ATOMIC_RELAXED);
			__atomic_store_n(seq_at(page, SEQ_END), seq, __ATOMIC_RELAXED);
			/* the number is in the page before it is recorded as the page's last */
			__atomic_store_n(&s->last[i], seq, __ATOMIC_RELEASE);
			w->writes++;
		}
		if (!w->passes++)
			__atomic_add_fetch(&first_passes, 1, __ATOMIC_RELEASE);
	}
	w->cpu = sched_getcpu();
	return NULL;
}

static void *cleaner(void *p)
{
	struct cleaner *c = p;
	struct shared *s = c->s;
	size_t len = s->pages * PH_PAGE;
	char path[512];
	c->affinity_errno = on_cpu(1);
	/* every page written once before the first clean: each one then has a number to lose */
	while (__atomic_load_n(&first_passes, __ATOMIC_ACQUIRE) < s->writers && !__atomic_load_n(&stop, __ATOMIC_RELAXED))
		usleep(1000);
	snprintf(path, sizeof(path), "%s/memory.reclaim", s->cgroup ? s->cgroup : "");
	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
		if (msync(s->map, len, MS_SYNC) && !c->msync_errno)
			c->msync_errno = errno;
		if (fsync(s->fd) && !c->fsync_errno)
			c->fsync_errno = errno;
		if (sync_file_range(s->fd, 0, (off_t)len,
				    SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER) &&
		    !c->sfr_errno)
			c->sfr_errno = errno;
		if (c->pageout_errno != EINVAL) { /* EINVAL: a kernel without MADV_PAGEOUT (< 5.4) */
			if (madvise(s->map, len, MADV_PAGEOUT))
				c->pageout_errno = errno;
			else
				c->pageouts++;
		}
		if (s->reclaim && s->cgroup) {
			int cfd = open(path, O_WRONLY);
			if ((cfd < 0 || write(cfd, "1G", 2) < 0) && !c->reclaim_errno)
				c->reclaim_errno = errno;
			if (cfd >= 0)
				close(cfd);
		}
		c->cycles++;
	}
	c->cpu = sched_getcpu();
	return NULL;
}

/* the record: next to this program unless record= names it (never on the file system under test) */
static const char *record_path(int argc, char **argv, char *buf, size_t size)
{
	const char *r = ph_arg(argc, argv, "record", NULL);
	if (r)
		return r;
	ssize_t n = readlink("/proc/self/exe", buf, size - 8);
	if (n <= 0)
		ph_die("readlink /proc/self/exe");
	strcpy(buf + n, ".last");
	return buf;
}

static void save_record(const char *path, const char *file, const struct shared *s)
{
	FILE *f = fopen(path, "w");
	if (!f)
		ph_die("create the record");
	fprintf(f, "mkclean_race pages=%zu file=%s\n", s->pages, file);
	for (size_t i = 0; i < s->pages; i++)
		fprintf(f, "%llu %lu\n", (unsigned long long)__atomic_load_n(&s->last[i], __ATOMIC_ACQUIRE),
			s->regress[i]);
	if (fflush(f) || fsync(fileno(f)) || fclose(f))
		ph_die("write the record");
}

static int verify(const char *file, const char *record)
{
	char name[4096];
	size_t pages = 0;
	FILE *rf = fopen(record, "r");
	if (!rf)
		ph_die("open the record (did the run mode run?)");
	if (fscanf(rf, "mkclean_race pages=%zu file=%4095s", &pages, name) != 2 || !pages)
		ph_die("parse the record");
	if (strcmp(name, file)) {
		errno = EINVAL;
		ph_die("the record is of another file");
	}
	int fd = open(file, O_RDONLY | O_DIRECT);
	unsigned char *page = aligned_alloc(PH_PAGE, PH_PAGE);
	size_t a = 0, b = 0, stale = 0, regressed = 0, zero = 0, other = 0, misplaced = 0;
	unsigned long long max_lag = 0;
	if (fd < 0 || !page)
		ph_die("open for verify");
	for (size_t i = 0; i < pages; i++) {
		unsigned long long last;
		unsigned long reg;
		if (fscanf(rf, "%llu %lu", &last, &reg) != 2)
			ph_die("a short record");
		if (pread(fd, page, PH_PAGE, (off_t)(i * PH_PAGE)) != (ssize_t)PH_PAGE) {
			other++;
			continue;
		}
		uint64_t v1, v2, idx = 0;
		memcpy(&v1, page + SEQ_OFF, 8);
		memcpy(&v2, page + SEQ_END, 8);
		memcpy(&idx, page + 9, 7);
		if (memcmp(page, "PINHARNS", 8) || page[8] != 'A') {
			size_t nz = 0;
			for (size_t k = 0; k < PH_PAGE; k++)
				nz += page[k] != 0;
			if (nz)
				other++;
			else
				zero++;
		} else if (idx != i)
			misplaced++;
		else if (reg)
			regressed++;
		else if (v1 == v2 && v1 == INITIAL)
			a++;
		else if (v1 != v2 || v1 > last)
			other++;
		else if (v1 == last)
			b++;
		else {
			stale++;
			max_lag = last - v1 > max_lag ? last - v1 : max_lag;
		}
	}
	fclose(rf);
	close(fd);
	printf("{\"verify\": true, \"pages\": %zu, \"A\": %zu, \"B\": %zu, \"stale\": %zu, \"regressed\": %zu, "
	       "\"zero\": %zu, \"other\": %zu, \"misplaced\": %zu, \"max_lag\": %llu, \"record\": \"%s\"}\n",
	       pages, a, b, stale, regressed, zero, other, misplaced, max_lag, record);
	return 0;
}

/* the file: pattern A (its "number" is INITIAL), written back and out of the page cache, so the
 * mapping's faults read it from disk (where a large-folio readahead can happen) */
static int make_file(const char *path, size_t pages)
{
	int fd = ph_make_file(path, pages);
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	return fd;
}

static unsigned char *map_file(int fd, size_t len, int thp, int *madvise_errno)
{
	if (!thp) {
		unsigned char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (m == MAP_FAILED)
			ph_die("mmap");
		return m;
	}
	/* a PMD-aligned address: reserve len + 2 MiB, map the file over the aligned part */
	unsigned char *r = mmap(NULL, len + PMD_SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (r == MAP_FAILED)
		ph_die("mmap reserve");
	unsigned char *m = (unsigned char *)(((uintptr_t)r + PMD_SIZE - 1) & ~(PMD_SIZE - 1));
	if (m > r)
		munmap(r, (size_t)(m - r));
	munmap(m + len, (size_t)(r + PMD_SIZE - m));
	if (mmap(m, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED)
		ph_die("mmap at a PMD boundary");
	*madvise_errno = madvise(m, len, MADV_HUGEPAGE) ? errno : 0; /* EINVAL: no THP in this kernel */
	return m;
}

/* kB of the mapping at addr that smaps counts as FilePmdMapped (-1: no such field, a kernel < 4.x) */
static long file_pmd_mapped_kb(void *addr)
{
	char line[512];
	long kb = -1;
	int in = 0;
	FILE *f = fopen("/proc/self/smaps", "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2)
			in = lo == (uintptr_t)addr;
		else if (in && sscanf(line, "FilePmdMapped: %ld kB", &kb) == 1)
			break;
	}
	fclose(f);
	return kb;
}

/* what the kernel gave the mapping: large-folio pages and heads (kpageflags by PFN), PMD-mapped kB */
static void folios_json(const char *when, unsigned char *map, size_t pages)
{
	uint64_t *pfns = calloc(pages, sizeof(*pfns));
	size_t mapped = 0, large = 0, heads = 0, thp = 0;
	int kf = open("/proc/kpageflags", O_RDONLY);
	if (!pfns)
		ph_die("alloc");
	ph_pfns(map, pages, pfns);
	for (size_t i = 0; i < pages; i++) {
		uint64_t fl = ph_pfn_flags(kf, pfns[i]);
		mapped += pfns[i] != 0;
		large += ((fl >> KPF_COMPOUND_HEAD) | (fl >> KPF_COMPOUND_TAIL)) & 1;
		heads += (fl >> KPF_COMPOUND_HEAD) & 1;
		thp += (fl >> KPF_THP) & 1;
	}
	if (kf >= 0)
		close(kf);
	free(pfns);
	printf("\"%s\": {\"mapped_pages\": %zu, \"large_folio_pages\": %zu, \"large_folio_heads\": %zu, "
	       "\"thp_pages\": %zu, \"file_pmd_mapped_kb\": %ld}",
	       when, mapped, large, heads, thp, file_pmd_mapped_kb(map));
}

/* the bracketed word of /sys/kernel/mm/transparent_hugepage/enabled ("" without THP) */
static void thp_setting(char *out, size_t size)
{
	char buf[128] = "";
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
	out[0] = 0;
	if (!f)
		return;
	if (fgets(buf, sizeof(buf), f)) {
		char *a = strchr(buf, '['), *b = a ? strchr(a, ']') : NULL;
		if (a && b && (size_t)(b - a) < size) {
			memcpy(out, a + 1, (size_t)(b - a - 1));
			out[b - a - 1] = 0;
		}
	}
	fclose(f);
}

static long long vmstat_one(const char *key)
{
	char k[128];
	long long v, out = -1;
	FILE *f = fopen("/proc/vmstat", "r");
	if (!f)
		return -1;
	while (fscanf(f, "%127s %lld", k, &v) == 2)
		if (!strcmp(k, key))
			out = v;
	fclose(f);
	return out;
}

int main(int argc, char **argv)
{
	char rbuf[4096], thp_mode[32];
	const char *file = ph_arg(argc, argv, "file", "/mnt/scratch/pinned");
	const char *record = record_path(argc, argv, rbuf, sizeof(rbuf));
	if (!strcmp(ph_arg(argc, argv, "mode", "run"), "verify"))
		return verify(file, record);
	struct shared s = {0};
	s.pages = (size_t)ph_argl(argc, argv, "pages", 16);
	s.writers = (int)ph_argl(argc, argv, "writers", 2);
	s.cgroup = ph_arg(argc, argv, "cgroup", NULL);
	s.reclaim = (int)ph_argl(argc, argv, "reclaim", 0);
	double seconds = strtod(ph_arg(argc, argv, "seconds", "4"), NULL);
	int thp = (int)ph_argl(argc, argv, "thp", 0);
	if (s.writers < 1 || s.writers > MAX_WRITERS) {
		errno = EINVAL;
		ph_die("writers= must be 1..8");
	}
	if (thp && s.pages < THP_PAGES)
		s.pages = THP_PAGES;
	unlink(record); /* a record left by an earlier run must not vouch for this one */
	long long vm0[PH_VMSTAT_KEYS], vm1[PH_VMSTAT_KEYS];
	size_t len = s.pages * PH_PAGE;
	s.fd = make_file(file, s.pages);
	int hugepage_errno = 0;
	s.map = map_file(s.fd, len, thp, &hugepage_errno);
	s.last = calloc(s.pages, sizeof(*s.last));
	s.regress = calloc(s.pages, sizeof(*s.regress));
	if (!s.last || !s.regress)
		ph_die("alloc");
	for (size_t i = 0; i < s.pages; i++) /* fault it all in by reads: the readahead decides the folios */
		(void)*(volatile unsigned char *)(s.map + i * PH_PAGE);
	thp_setting(thp_mode, sizeof(thp_mode));
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	printf("{\"workload\": \"mkclean_race\", \"pages\": %zu, \"seconds\": %.1f, \"writers\": %d, \"cpus\": %ld, "
	       "\"thp\": %d, \"madv_hugepage_errno\": %d, \"thp_enabled\": \"%s\", ", s.pages, seconds, s.writers, cpus, thp,
	       hugepage_errno, thp_mode);
	folios_json("folios_start", s.map, s.pages);
	fflush(stdout);

	struct rusage ru0, ru1;
	struct writer w[MAX_WRITERS];
	struct cleaner c = {.s = &s};
	ph_vmstat(vm0);
	long long written0 = vmstat_one("nr_written"); /* from here: the pages writeback writes during the race */
	getrusage(RUSAGE_SELF, &ru0);
	if (ph_step("two CPUs online (the writers on 0, the cleaner on 1)", cpus >= 2 ? 0 : (errno = ENXIO, -1)) == 0) {
		for (int i = 0; i < s.writers; i++) {
			w[i] = (struct writer){.s = &s, .id = i};
			if (pthread_create(&w[i].t, NULL, writer, &w[i]))
				ph_die("pthread_create writer");
		}
		if (pthread_create(&c.t, NULL, cleaner, &c))
			ph_die("pthread_create cleaner");
		usleep((useconds_t)(seconds * 1e6));
		__atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
		pthread_join(c.t, NULL);
		for (int i = 0; i < s.writers; i++) /* a writer stops between pages: its last store is recorded */
			pthread_join(w[i].t, NULL);
	} else {
		s.writers = 0;
	}
	getrusage(RUSAGE_SELF, &ru1);
	unsigned long passes = 0, writes = 0, regressions = 0;
	size_t written = 0, regressed = 0, mismatch = 0;
	printf(", \"writer_cpus\": [");
	for (int i = 0; i < s.writers; i++) {
		errno = w[i].affinity_errno;
		ph_step("sched_setaffinity(CPU 0) of a writer", errno ? -1 : 0);
		passes += w[i].passes;
		writes += w[i].writes;
		printf("%s%d", i ? ", " : "", w[i].cpu);
	}
	errno = c.affinity_errno;
	ph_step("sched_setaffinity(CPU 1) of the cleaner", errno ? -1 : 0);
	for (size_t i = 0; i < s.pages; i++) {
		uint64_t last = __atomic_load_n(&s.last[i], __ATOMIC_ACQUIRE);
		unsigned char *page = s.map + i * PH_PAGE;
		written += last != 0;
		regressions += s.regress[i];
		regressed += s.regress[i] != 0;
		uint64_t want = last ? last : INITIAL;
		mismatch += *seq_at(page, SEQ_OFF) != want || *seq_at(page, SEQ_END) != want;
	}
	printf("], \"cleaner_cpu\": %d, \"writer_passes\": %lu, \"writes\": %lu, \"clean_cycles\": %lu, "
	       "\"pageouts\": %lu, \"msync_errno\": %d, \"fsync_errno\": %d, \"sync_file_range_errno\": %d, "
	       "\"pageout_errno\": %d, \"reclaim_errno\": %d, \"minor_faults\": %ld, \"major_faults\": %ld, "
	       "\"memory_regressions\": %lu, "
	       "\"regressed_pages\": %zu, \"memory_mismatch\": %zu, ",
	       c.cpu, passes, writes, c.cycles, c.pageouts, c.msync_errno, c.fsync_errno, c.sfr_errno, c.pageout_errno,
	       c.reclaim_errno, ru1.ru_minflt - ru0.ru_minflt, ru1.ru_majflt - ru0.ru_majflt, regressions, regressed, mismatch);
	folios_json("folios_end", s.map, s.pages);
	save_record(record, file, &s);
	int fsync_ret = fsync(s.fd);
	munmap(s.map, len);
	close(s.fd);
	ph_vmstat(vm1);
	long long written1 = vmstat_one("nr_written");
	printf(", \"record\": \"%s\", \"nr_written\": %lld, \"pin\": {\"errno\": 0, \"strerror\": \"\", \"taken\": false}, "
	       "\"setup_errno\": %d, \"setup_stage\": \"%s\", \"fsync_ret\": %d, \"device_wrote_B\": %zu, "
	       "\"vmstat_delta\": ",
	       record, written0 < 0 || written1 < 0 ? 0 : written1 - written0, ph_setup_errno, ph_setup_stage, fsync_ret,
	       written);
	ph_vmstat_delta_json(stdout, vm0, vm1);
	printf("}\n");
	return 0;
}
