/* iommufd: map the MAP_SHARED file mapping into an IOAS that has a mock device
 * domain attached (CONFIG_IOMMUFD_TEST's selftest device), so IOMMU_IOAS_MAP
 * pins it FOLL_LONGTERM|FOLL_WRITE at once; let writeback clean the pages and
 * reclaim strip their buffers while the pin is held, then let an emulated
 * device access (IOMMU_TEST_OP_ACCESS_RW, write) put pattern B into them
 * through the IOAS, and IOMMU_IOAS_UNMAP (unpin_user_page_range_dirty_lock).
 *
 * args: file=PATH pages=N cgroup=DIR [reclaim=1]
 *       mode=verify file=PATH pages=N
 * The uapi (v6.2+) is declared here: the host's headers may predate it, and
 * iommufd_test.h is not exported (drivers/iommu/iommufd/iommufd_test.h).
 */
#include "common.h"
#include <linux/types.h>
#include <sys/ioctl.h>

#define IOMMUFD_TYPE (';')
#define IOMMU_IOAS_ALLOC _IO(IOMMUFD_TYPE, 0x81)
#define IOMMU_IOAS_MAP _IO(IOMMUFD_TYPE, 0x85)
#define IOMMU_IOAS_UNMAP _IO(IOMMUFD_TYPE, 0x86)
#define IOMMU_TEST_CMD _IO(IOMMUFD_TYPE, 0x80 + 32)
#define IOMMU_IOAS_MAP_FIXED_IOVA (1 << 0)
#define IOMMU_IOAS_MAP_WRITEABLE (1 << 1)
#define IOMMU_IOAS_MAP_READABLE (1 << 2)
#define IOMMU_TEST_OP_MOCK_DOMAIN 2
#define IOMMU_TEST_OP_CREATE_ACCESS 5
#define IOMMU_TEST_OP_ACCESS_RW 8
#define MOCK_ACCESS_RW_WRITE (1 << 0)
#define MOCK_APERTURE_START (1UL << 24)

struct iommu_ioas_alloc {
	__u32 size, flags, out_ioas_id;
};
struct iommu_ioas_map {
	__u32 size, flags, ioas_id, reserved;
	__aligned_u64 user_va, length, iova;
};
struct iommu_ioas_unmap {
	__u32 size, ioas_id;
	__aligned_u64 iova, length;
};
struct iommu_test_cmd {
	__u32 size, op, id, reserved;
	union {
		struct {
			__u32 out_stdev_id, out_hwpt_id, out_idev_id;
		} mock_domain;
		struct {
			__u32 out_access_fd, flags;
		} create_access;
		struct {
			__aligned_u64 iova, length, uptr;
			__u32 flags;
		} access_rw;
		__aligned_u64 union_size[6]; /* the largest member in v6.12 (dirty) */
	};
	__u32 last;
};

static int test_cmd(int fd, struct iommu_test_cmd *cmd, __u32 op, __u32 id)
{
	cmd->size = sizeof(*cmd);
	cmd->op = op;
	cmd->id = id;
	return ioctl(fd, IOMMU_TEST_CMD, cmd);
}

int main(int argc, char **argv)
{
	struct ph_opts o = ph_opts(argc, argv, 0, 0); /* mode=verify: verifies and exits */
	const char *file = o.file;
	size_t pages = o.pages;
	const char *cgroup = o.cgroup;
	int do_reclaim = o.reclaim;
	long long vm0[PH_VMSTAT_KEYS], vm1[PH_VMSTAT_KEYS];

	int fd;
	unsigned char *map = ph_map_file(file, pages, &fd);
	size_t len = pages * PH_PAGE;
	unsigned char *src = aligned_alloc(PH_PAGE, len);
	if (!src)
		ph_die("alloc");
	for (size_t i = 0; i < pages; i++)
		ph_fill(src + i * PH_PAGE, 'B', i);
	ph_vmstat(vm0);

	int ifd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	if (ifd < 0)
		ph_die("open /dev/iommu");
	struct iommu_ioas_alloc alloc = {.size = sizeof(alloc)};
	struct iommu_test_cmd dom, acc, rw;
	memset(&dom, 0, sizeof(dom));
	memset(&acc, 0, sizeof(acc));
	if (ioctl(ifd, IOMMU_IOAS_ALLOC, &alloc))
		ph_die("IOMMU_IOAS_ALLOC");
	if (test_cmd(ifd, &dom, IOMMU_TEST_OP_MOCK_DOMAIN, alloc.out_ioas_id))
		ph_die("IOMMU_TEST_OP_MOCK_DOMAIN (CONFIG_IOMMUFD_TEST)");
	/* the pin under test: with a domain attached, the map pins every page now */
	struct iommu_ioas_map m = {.size = sizeof(m), .ioas_id = alloc.out_ioas_id, .user_va = (uintptr_t)map,
				   .length = len, .iova = MOCK_APERTURE_START,
				   .flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE};
	int pin_errno = ioctl(ifd, IOMMU_IOAS_MAP, &m) ? errno : 0;

	printf("{\"workload\": \"iommufd\", \"pages\": %zu, \"ioas\": %u, \"flags_held\": ", pages, alloc.out_ioas_id);
	ph_flags_json(stdout, map, pages);
	struct ph_wb wb = {0, 0, 0, 0};
	size_t b_in_memory = 0;
	if (!pin_errno) {
		ph_step("IOMMU_TEST_OP_CREATE_ACCESS", test_cmd(ifd, &acc, IOMMU_TEST_OP_CREATE_ACCESS, alloc.out_ioas_id));
		wb = ph_writeback_and_reclaim(fd, map, pages, cgroup, do_reclaim); /* pin held */
		if (!ph_setup_errno) {
			/* the device: an emulated access writes pattern B through the IOAS */
			memset(&rw, 0, sizeof(rw));
			rw.access_rw.iova = MOCK_APERTURE_START;
			rw.access_rw.length = len;
			rw.access_rw.uptr = (uintptr_t)src;
			rw.access_rw.flags = MOCK_ACCESS_RW_WRITE;
			ph_step("IOMMU_TEST_OP_ACCESS_RW", test_cmd(ifd, &rw, IOMMU_TEST_OP_ACCESS_RW, acc.create_access.out_access_fd));
			close((int)acc.create_access.out_access_fd);
		}
		for (size_t i = 0; i < pages; i++)
			b_in_memory += ph_classify(map + i * PH_PAGE) == 'B';
		struct iommu_ioas_unmap um = {.size = sizeof(um), .ioas_id = alloc.out_ioas_id,
					      .iova = MOCK_APERTURE_START, .length = len};
		ph_step("IOMMU_IOAS_UNMAP", ioctl(ifd, IOMMU_IOAS_UNMAP, &um)); /* unpin: dirties the pages */
	}
	close(ifd);
	ph_unmap_file(map, pages, fd);
	ph_vmstat(vm1);
	ph_print_result(pin_errno, &wb, b_in_memory, vm0, vm1);
	return 0;
}
