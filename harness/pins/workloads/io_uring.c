/* io_uring: register the MAP_SHARED file mapping as an io_uring fixed buffer
 * (a FOLL_LONGTERM|FOLL_WRITE pin). Kernels refuse it (6.1: io_uring's own
 * file-backed check, EOPNOTSUPP; >= 6.5: GUP's writable_file_mapping_allowed,
 * EFAULT). If a kernel allows it, the "device" (an IORING_OP_READ_FIXED from
 * src) writes pattern B into the pinned pages, the file is fsync'ed while the
 * pin is held, and the buffers are unregistered (unpin + dirty).
 *
 * args: file=PATH pages=N [src=PATH]     mode=verify file=PATH pages=N
 */
#include "common.h"
#include <linux/io_uring.h>
#include <sys/syscall.h>
#include <sys/uio.h>

static int sys_setup(unsigned entries, struct io_uring_params *p)
{
	return (int)syscall(__NR_io_uring_setup, entries, p);
}

static int sys_register(int fd, unsigned op, void *arg, unsigned n)
{
	return (int)syscall(__NR_io_uring_register, fd, op, arg, n);
}

static int sys_enter(int fd, unsigned to_submit, unsigned min_complete, unsigned flags)
{
	return (int)syscall(__NR_io_uring_enter, fd, to_submit, min_complete, flags, NULL, 0);
}

/* one READ_FIXED of len bytes from sfd into buf (registered index 0); returns cqe res */
static int read_fixed(int ring, struct io_uring_params *p, int sfd, void *buf, size_t len)
{
	size_t sq_sz = p->sq_off.array + p->sq_entries * sizeof(unsigned);
	size_t cq_sz = p->cq_off.cqes + p->cq_entries * sizeof(struct io_uring_cqe);
	char *sq = mmap(NULL, sq_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring, IORING_OFF_SQ_RING);
	char *cq = mmap(NULL, cq_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring, IORING_OFF_CQ_RING);
	struct io_uring_sqe *sqes = mmap(NULL, p->sq_entries * sizeof(*sqes), PROT_READ | PROT_WRITE,
					 MAP_SHARED | MAP_POPULATE, ring, IORING_OFF_SQES);
	if (sq == MAP_FAILED || cq == MAP_FAILED || sqes == MAP_FAILED)
		return -errno;
	unsigned *tail = (unsigned *)(sq + p->sq_off.tail), *mask = (unsigned *)(sq + p->sq_off.ring_mask);
	unsigned *array = (unsigned *)(sq + p->sq_off.array);
	unsigned idx = *tail & *mask;
	memset(&sqes[idx], 0, sizeof(sqes[idx]));
	sqes[idx].opcode = IORING_OP_READ_FIXED;
	sqes[idx].fd = sfd;
	sqes[idx].addr = (unsigned long)buf;
	sqes[idx].len = (unsigned)len;
	sqes[idx].buf_index = 0;
	array[idx] = idx;
	__atomic_store_n(tail, *tail + 1, __ATOMIC_RELEASE);
	if (sys_enter(ring, 1, 1, IORING_ENTER_GETEVENTS) < 0)
		return -errno;
	unsigned *chead = (unsigned *)(cq + p->cq_off.head), *cmask = (unsigned *)(cq + p->cq_off.ring_mask);
	struct io_uring_cqe *cqes = (struct io_uring_cqe *)(cq + p->cq_off.cqes);
	int res = cqes[*chead & *cmask].res;
	__atomic_store_n(chead, *chead + 1, __ATOMIC_RELEASE);
	return res;
}

int main(int argc, char **argv)
{
	struct ph_opts o = ph_opts(argc, argv, 0, 0); /* mode=verify: verifies and exits */
	const char *file = o.file;
	size_t pages = o.pages;
	const char *src = ph_arg(argc, argv, "src", NULL);
	long long vm0[PH_VMSTAT_KEYS], vm1[PH_VMSTAT_KEYS];
	int fd;
	unsigned char *map = ph_map_file(file, pages, &fd);
	size_t len = pages * PH_PAGE;
	ph_vmstat(vm0);
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	int ring = sys_setup(4, &p);
	if (ring < 0)
		ph_die("io_uring_setup");
	struct iovec iov = {map, len};
	int reg = sys_register(ring, IORING_REGISTER_BUFFERS, &iov, 1);
	int pin_errno = reg < 0 ? errno : 0;
	int dev_res = 0, fsync_ret = 0;
	size_t b_in_memory = 0;
	printf("{\"workload\": \"io_uring\", \"pages\": %zu, \"flags_held\": ", pages);
	ph_flags_json(stdout, map, pages);
	if (reg == 0) {
		if (src) {
			int sfd = open(src, O_RDONLY);
			dev_res = sfd < 0 ? -errno : read_fixed(ring, &p, sfd, map, len);
		}
		fsync_ret = fsync(fd); /* writeback while the pin is held */
		ph_while_held();
		for (size_t i = 0; i < pages; i++)
			b_in_memory += ph_classify(map + i * PH_PAGE) == 'B';
		sys_register(ring, IORING_UNREGISTER_BUFFERS, NULL, 0);
	}
	close(ring);
	munmap(map, len);
	fsync(fd);
	close(fd);
	ph_vmstat(vm1);
	printf(", \"pin\": {\"errno\": %d, \"strerror\": \"%s\"}, \"device_res\": %d, \"fsync_ret\": %d, "
	       "\"device_wrote_B\": %zu, \"vmstat_delta\": ",
	       pin_errno, pin_errno ? strerror(pin_errno) : "", dev_res, fsync_ret, b_in_memory);
	ph_vmstat_delta_json(stdout, vm0, vm1);
	printf("}\n");
	return 0;
}
