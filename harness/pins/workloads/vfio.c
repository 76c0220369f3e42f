/* vfio: map the MAP_SHARED file mapping for device DMA through VFIO type1
 * (VFIO_IOMMU_MAP_DMA: a FOLL_LONGTERM|FOLL_WRITE pin), let writeback clean
 * the pages and reclaim strip their buffers while the pin is held, then let
 * QEMU's `edu` PCI device DMA pattern B into them and unmap (unpin + dirty).
 * >= 6.5 refuses the pin (EFAULT); 6.1 allows it, and under
 * buffer_heads_over_limit the unpin dirties pages without buffers.
 *
 * args: file=PATH pages=N device=0000:00:0x.0 group=N cgroup=DIR [reclaim=1]
 *       mode=verify file=PATH pages=N
 * edu registers: 0x80 src, 0x88 dst, 0x90 count, 0x98 cmd (1 start, 2 to RAM); buffer at 0x40000.
 * QEMU 7.2's edu aborts on a 4096-byte transfer: DMA in 2 KiB halves.
 */
#include "common.h"
#include <linux/vfio.h>
#include <sys/ioctl.h>

#define IOVA_FILE 0x1000000ULL
#define IOVA_BOUNCE 0x800000ULL
#define EDU_BUF 0x40000ULL
#define EDU_CHUNK 2048

static int dev_fd;
static off_t bar0;

static void reg_write(unsigned off, uint64_t val)
{
	if (pwrite(dev_fd, &val, 8, bar0 + off) != 8)
		ph_die("edu register write");
}

static uint64_t reg_read(unsigned off)
{
	uint64_t v = 0;
	if (pread(dev_fd, &v, 8, bar0 + off) != 8)
		ph_die("edu register read");
	return v;
}

static int edu_dma(uint64_t src, uint64_t dst, uint64_t len, int to_ram)
{
	reg_write(0x80, src);
	reg_write(0x88, dst);
	reg_write(0x90, len);
	reg_write(0x98, 1 | (to_ram ? 2 : 0));
	for (int i = 0; i < 100000; i++) {
		if (!(reg_read(0x98) & 1))
			return 0;
		usleep(100);
	}
	return -1;
}

int main(int argc, char **argv)
{
	struct ph_opts o = ph_opts(argc, argv, 0, 0); /* mode=verify: verifies and exits */
	const char *file = o.file;
	size_t pages = o.pages;
	const char *device = ph_arg(argc, argv, "device", NULL), *group_no = ph_arg(argc, argv, "group", NULL);
	const char *cgroup = o.cgroup;
	int do_reclaim = o.reclaim;
	long long vm0[PH_VMSTAT_KEYS], vm1[PH_VMSTAT_KEYS];
	char path[512];
	if (!device || !group_no)
		ph_die("device= and group= are required");

	int fd;
	unsigned char *map = ph_map_file(file, pages, &fd);
	size_t len = pages * PH_PAGE;
	unsigned char *bounce = mmap(NULL, PH_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (bounce == MAP_FAILED)
		ph_die("mmap");
	ph_vmstat(vm0);

	int container = open("/dev/vfio/vfio", O_RDWR);
	snprintf(path, sizeof(path), "/dev/vfio/%s", group_no);
	int group = open(path, O_RDWR);
	if (container < 0 || group < 0)
		ph_die("open vfio container/group");
	struct vfio_group_status gs = {.argsz = sizeof(gs)};
	if (ioctl(group, VFIO_GROUP_GET_STATUS, &gs) || !(gs.flags & VFIO_GROUP_FLAGS_VIABLE))
		ph_die("vfio group not viable");
	if (ioctl(group, VFIO_GROUP_SET_CONTAINER, &container))
		ph_die("VFIO_GROUP_SET_CONTAINER");
	if (ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) && ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU))
		ph_die("VFIO_SET_IOMMU");
	dev_fd = ioctl(group, VFIO_GROUP_GET_DEVICE_FD, device);
	if (dev_fd < 0)
		ph_die("VFIO_GROUP_GET_DEVICE_FD");
	struct vfio_region_info ri = {.argsz = sizeof(ri), .index = VFIO_PCI_BAR0_REGION_INDEX};
	if (ioctl(dev_fd, VFIO_DEVICE_GET_REGION_INFO, &ri))
		ph_die("BAR0 region info");
	bar0 = (off_t)ri.offset;
	struct vfio_region_info ci = {.argsz = sizeof(ci), .index = VFIO_PCI_CONFIG_REGION_INDEX};
	uint16_t cmd = 0;
	if (ioctl(dev_fd, VFIO_DEVICE_GET_REGION_INFO, &ci) || pread(dev_fd, &cmd, 2, (off_t)ci.offset + 4) != 2)
		ph_die("PCI config");
	cmd |= 0x4; /* bus master */
	if (pwrite(dev_fd, &cmd, 2, (off_t)ci.offset + 4) != 2)
		ph_die("enable bus mastering");

	struct vfio_iommu_type1_dma_map bm = {.argsz = sizeof(bm), .flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
					      .vaddr = (uintptr_t)bounce, .iova = IOVA_BOUNCE, .size = PH_PAGE};
	if (ioctl(container, VFIO_IOMMU_MAP_DMA, &bm))
		ph_die("map bounce buffer");
	/* the pin under test */
	struct vfio_iommu_type1_dma_map fm = {.argsz = sizeof(fm), .flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
					      .vaddr = (uintptr_t)map, .iova = IOVA_FILE, .size = len};
	int pin_errno = ioctl(container, VFIO_IOMMU_MAP_DMA, &fm) ? errno : 0;

	printf("{\"workload\": \"vfio\", \"pages\": %zu, \"device\": \"%s\", \"flags_held\": ", pages, device);
	ph_flags_json(stdout, map, pages);
	struct ph_wb wb = {0, 0, 0, 0};
	int dma_err = 0;
	size_t b_in_memory = 0;
	if (!pin_errno) {
		wb = ph_writeback_and_reclaim(fd, map, pages, cgroup, do_reclaim); /* pin held */
		/* the device writes pattern B into the pinned pages, behind the file system's back */
		for (size_t i = 0; i < pages && !dma_err; i++) {
			ph_fill(bounce, 'B', i);
			for (unsigned off = 0; off < PH_PAGE && !dma_err; off += EDU_CHUNK) {
				dma_err |= edu_dma(IOVA_BOUNCE + off, EDU_BUF, EDU_CHUNK, 0);
				dma_err |= edu_dma(EDU_BUF, IOVA_FILE + i * PH_PAGE + off, EDU_CHUNK, 1);
			}
		}
		for (size_t i = 0; i < pages; i++)
			b_in_memory += ph_classify(map + i * PH_PAGE) == 'B';
		struct vfio_iommu_type1_dma_unmap um = {.argsz = sizeof(um), .iova = IOVA_FILE, .size = len};
		ioctl(container, VFIO_IOMMU_UNMAP_DMA, &um); /* unpin: set_page_dirty_lock on each page */
	}
	ph_unmap_file(map, pages, fd);
	close(dev_fd);
	close(group);
	close(container);
	ph_vmstat(vm1);
	printf(", \"pin\": {\"errno\": %d, \"strerror\": \"%s\"}, \"fsync_ret\": %d, \"reclaim_errno\": %d, "
	       "\"dma_error\": %d, \"buffers_before_reclaim\": %zu, \"buffers_after_reclaim\": %zu, "
	       "\"device_wrote_B\": %zu, \"vmstat_delta\": ",
	       pin_errno, pin_errno ? strerror(pin_errno) : "", wb.fsync_ret, wb.reclaim_err, dma_err, wb.private_before,
	       wb.private_after, b_in_memory);
	ph_vmstat_delta_json(stdout, vm0, vm1);
	printf("}\n");
	return 0;
}
