/* odirect: an O_DIRECT read from a slow block device into a MAP_SHARED file
 * mapping, while the file is fsync'ed and memory.reclaim strips the pages'
 * buffers. Kernels whose DIO takes page references instead of pins (6.1) let
 * reclaim release the buffers, and the dirtying at DIO completion hits a page
 * without buffers: WARNING in ext4_dirty_folio and the DIO data never reaches
 * the disk.
 *
 * args: file=PATH src=/dev/vdX pages=N ahead=N cgroup=DIR [reclaim=1] [fsync=1]
 *       mode=verify file=PATH pages=N
 */
#include "common.h"
#include <pthread.h>

struct rd {
	int fd;
	void *buf;
	size_t len;
	off_t off;
	ssize_t ret;
	int err;
	double done;
};

static void *reader(void *p)
{
	struct rd *r = p;
	r->ret = pread(r->fd, r->buf, r->len, r->off);
	r->err = r->ret < 0 ? errno : 0;
	r->done = ph_now();
	return NULL;
}

int main(int argc, char **argv)
{
	struct ph_opts o = ph_opts(argc, argv, 0, 0); /* mode=verify: verifies and exits */
	const char *file = o.file;
	size_t pages = o.pages;
	const char *src = ph_arg(argc, argv, "src", NULL);
	const char *cgroup = o.cgroup;
	int ahead = (int)ph_argl(argc, argv, "ahead", 3);
	int do_reclaim = o.reclaim, do_fsync = (int)ph_argl(argc, argv, "fsync", 1);
	long long vm0[PH_VMSTAT_KEYS], vm1[PH_VMSTAT_KEYS];
	char path[512];
	if (!src)
		ph_die("src= missing");

	int fd;
	unsigned char *map = ph_map_file(file, pages, &fd);
	size_t len = pages * PH_PAGE;
	int sfd = open(src, O_RDONLY | O_DIRECT);
	if (sfd < 0)
		ph_die("open src");
	ph_vmstat(vm0);

	/* occupy the throttled device so our read waits in the queue with its pages held */
	pthread_t t_ahead[16], t_main;
	struct rd r_ahead[16], r_main = {sfd, map, len, 0, 0, 0, 0};
	if (ahead > 16)
		ahead = 16;
	for (int i = 0; i < ahead; i++) {
		r_ahead[i] = (struct rd){sfd, aligned_alloc(PH_PAGE, PH_PAGE), PH_PAGE, (off_t)((pages + 1 + i) * PH_PAGE)};
		pthread_create(&t_ahead[i], NULL, reader, &r_ahead[i]);
	}
	usleep(100000);
	double t0 = ph_now();
	pthread_create(&t_main, NULL, reader, &r_main);
	usleep(300000); /* the DIO is now in flight: its pages are held */

	printf("{\"workload\": \"odirect\", \"pages\": %zu, \"flags_held\": ", pages);
	ph_flags_json(stdout, map, pages);
	uint64_t *pfns = calloc(pages, sizeof(*pfns));
	if (!pfns)
		ph_die("alloc");
	ph_pfns(map, pages, pfns); /* the pages the DIO holds: sampled by PFN, mapped or not */
	int fsync_ret = do_fsync ? fsync(fd) : 0;
	size_t private_before = ph_pfn_flags_json(NULL, pfns, pages, KPF_PRIVATE);
	int reclaim_err = 0;
	if (do_reclaim && cgroup) {
		snprintf(path, sizeof(path), "%s/memory.reclaim", cgroup);
		int cfd = open(path, O_WRONLY);
		if (cfd < 0 || write(cfd, "1G", 2) < 0)
			reclaim_err = errno;
		if (cfd >= 0)
			close(cfd);
	}
	printf(", \"flags_after_reclaim\": ");
	size_t private_after = ph_pfn_flags_json(stdout, pfns, pages, KPF_PRIVATE);
	free(pfns);
	ph_while_held();
	double reclaim_done = ph_now();

	pthread_join(t_main, NULL);
	for (int i = 0; i < ahead; i++)
		pthread_join(t_ahead[i], NULL);
	size_t b_in_memory = 0;
	for (size_t i = 0; i < pages; i++)
		b_in_memory += ph_classify(map + i * PH_PAGE) == 'B';
	printf(", \"flags_after_dio\": ");
	ph_flags_json(stdout, map, pages);
	munmap(map, len);
	fsync(fd);
	close(fd);
	ph_vmstat(vm1);
	printf(", \"pin\": {\"errno\": %d, \"ret\": %zd, \"seconds\": %.2f}, \"fsync_ret\": %d, "
	       "\"reclaim_errno\": %d, \"reclaim_before_dio_done\": %s, \"buffers_before_reclaim\": %zu, "
	       "\"buffers_after_reclaim\": %zu, \"device_wrote_B\": %zu, \"vmstat_delta\": ",
	       r_main.err, r_main.ret, r_main.done - t0, fsync_ret, reclaim_err,
	       reclaim_done < r_main.done ? "true" : "false", private_before, private_after, b_in_memory);
	ph_vmstat_delta_json(stdout, vm0, vm1);
	printf("}\n");
	return 0;
}
