/* vhost_vdpa: map the MAP_SHARED file mapping into a vDPA device's IOTLB through
 * /dev/vhost-vdpa-N (VHOST_IOTLB_UPDATE with VHOST_ACCESS_RW: vhost_vdpa_pa_map
 * pins it FOLL_LONGTERM|FOLL_WRITE), post its pages as the receive buffers of
 * vdpa_sim_net, let writeback clean them and reclaim strip their buffers while
 * the pin is held, then transmit pattern-B frames: the simulator loops each one
 * back into a receive buffer, writing the pinned page through the kernel
 * mapping. VHOST_IOTLB_INVALIDATE unpins (set_page_dirty_lock + unpin_user_page).
 * The rings and the transmit buffers live in anonymous memory, also in the IOTLB.
 * vdpa_sim must run in PA mode (vdpa_sim.use_va=0 on v6.3+): in VA mode
 * vhost_vdpa_va_map pins nothing and the simulator uses our mm instead.
 *
 * args: file=PATH pages=N dev=/dev/vhost-vdpa-0 cgroup=DIR [reclaim=1]
 *       mode=verify file=PATH pages=N   (checks the looped-back payload region)
 * A received page: 12-byte virtio_net_hdr_v1, broadcast destination MAC, then 'B'.
 */
#include "common.h"
#include <linux/vhost.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/resource.h>

#define QSIZE 64
#define HDR 12 /* struct virtio_net_hdr_v1 (VIRTIO_F_VERSION_1) */
#define REGION_OFF (HDR + 6)
#define REGION_LEN (PH_PAGE - REGION_OFF)
#define RX 0
#define TX 1

struct vq {
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	int kick, call;
};

static int vfd;
/* One IOTLB message: VHOST_IOTLB_UPDATE (identity IOVA) or VHOST_IOTLB_INVALIDATE. */
static int iotlb(void *addr, size_t len, uint8_t type)
{
	struct vhost_msg_v2 m;
	memset(&m, 0, sizeof(m));
	m.type = VHOST_IOTLB_MSG_V2;
	m.iotlb.iova = (uintptr_t)addr;
	m.iotlb.size = len;
	m.iotlb.uaddr = (uintptr_t)addr;
	m.iotlb.perm = VHOST_ACCESS_RW;
	m.iotlb.type = type;
	return write(vfd, &m, sizeof(m)) == (ssize_t)sizeof(m) ? 0 : -1;
}

static int set_status(uint8_t s)
{
	return ioctl(vfd, VHOST_VDPA_SET_STATUS, &s);
}

static int setup_vq(unsigned idx, struct vq *q)
{
	struct vhost_vring_state num = {.index = idx, .num = QSIZE}, base = {.index = idx, .num = 0};
	struct vhost_vring_addr addr = {.index = idx, .desc_user_addr = (uintptr_t)q->desc,
					.avail_user_addr = (uintptr_t)q->avail, .used_user_addr = (uintptr_t)q->used};
	q->kick = eventfd(0, EFD_CLOEXEC);
	q->call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	struct vhost_vring_file kick = {.index = idx, .fd = q->kick}, call = {.index = idx, .fd = q->call};
	struct vhost_vring_state enable = {.index = idx, .num = 1};
	if (ph_step("VHOST_SET_VRING_NUM", ioctl(vfd, VHOST_SET_VRING_NUM, &num)) ||
	    ph_step("VHOST_SET_VRING_BASE", ioctl(vfd, VHOST_SET_VRING_BASE, &base)) ||
	    ph_step("VHOST_SET_VRING_ADDR", ioctl(vfd, VHOST_SET_VRING_ADDR, &addr)) ||
	    ph_step("VHOST_SET_VRING_KICK", ioctl(vfd, VHOST_SET_VRING_KICK, &kick)) ||
	    ph_step("VHOST_SET_VRING_CALL", ioctl(vfd, VHOST_SET_VRING_CALL, &call)) ||
	    ph_step("VHOST_VDPA_SET_VRING_ENABLE", ioctl(vfd, VHOST_VDPA_SET_VRING_ENABLE, &enable)))
		return -1;
	return 0;
}

/* Post buffer i of len bytes at addr on q (descriptor i, one per buffer). */
static void post(struct vq *q, unsigned i, void *addr, uint32_t len, uint16_t flags)
{
	q->desc[i].addr = (uintptr_t)addr;
	q->desc[i].len = len;
	q->desc[i].flags = flags;
	q->desc[i].next = 0;
	q->avail->ring[i % QSIZE] = (uint16_t)i;
}

int main(int argc, char **argv)
{
	struct ph_opts o = ph_opts(argc, argv, REGION_OFF, REGION_LEN); /* mode=verify: verifies and exits */
	const char *file = o.file;
	size_t pages = o.pages;
	const char *dev = ph_arg(argc, argv, "dev", "/dev/vhost-vdpa-0"), *cgroup = o.cgroup;
	int do_reclaim = o.reclaim;
	long long vm0[PH_VMSTAT_KEYS], vm1[PH_VMSTAT_KEYS];
	struct rlimit unlimited = {RLIM_INFINITY, RLIM_INFINITY};
	setrlimit(RLIMIT_MEMLOCK, &unlimited); /* vhost_vdpa_pa_map counts pins against it */
	if (pages > QSIZE)
		pages = QSIZE;

	int fd;
	unsigned char *map = ph_map_file(file, pages, &fd);
	size_t len = pages * PH_PAGE;
	/* anonymous: 2 ring pages per queue, then the transmit buffers */
	size_t anon_len = 4 * PH_PAGE + len;
	unsigned char *anon = mmap(NULL, anon_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
				   -1, 0);
	if (anon == MAP_FAILED)
		ph_die("mmap");
	struct vq q[2];
	for (int i = 0; i < 2; i++) {
		unsigned char *base = anon + (size_t)i * 2 * PH_PAGE;
		q[i].desc = (struct vring_desc *)base;
		q[i].avail = (struct vring_avail *)(base + 16 * QSIZE);
		q[i].used = (struct vring_used *)(base + PH_PAGE);
	}
	unsigned char *txbuf = anon + 4 * PH_PAGE;
	for (size_t i = 0; i < pages; i++) {
		unsigned char *b = txbuf + i * PH_PAGE;
		memset(b, 0, HDR);
		memset(b + HDR, 0xff, 6); /* broadcast: vdpa_sim_net's receive filter lets it through */
		memset(b + REGION_OFF, 'B', REGION_LEN);
	}
	ph_vmstat(vm0);

	vfd = open(dev, O_RDWR);
	if (vfd < 0)
		ph_die("open vhost-vdpa device");
	uint64_t features = 0, backend = 0;
	uint16_t max_num = 0;
	ph_step("VHOST_SET_OWNER", ioctl(vfd, VHOST_SET_OWNER));
	ph_step("VHOST_GET_BACKEND_FEATURES", ioctl(vfd, VHOST_GET_BACKEND_FEATURES, &backend));
	backend &= 1ULL << VHOST_BACKEND_F_IOTLB_MSG_V2;
	ph_step("VHOST_SET_BACKEND_FEATURES", ioctl(vfd, VHOST_SET_BACKEND_FEATURES, &backend));
	ph_step("VHOST_VDPA_GET_VRING_NUM", ioctl(vfd, VHOST_VDPA_GET_VRING_NUM, &max_num));
	if (!ph_setup_errno && max_num < QSIZE) {
		ph_setup_errno = -1;
		ph_setup_stage = "queue size";
	}
	ph_step("reset", set_status(0));
	ph_step("status ACKNOWLEDGE|DRIVER", set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER));
	ph_step("VHOST_GET_FEATURES", ioctl(vfd, VHOST_GET_FEATURES, &features));
	features &= (1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_F_ACCESS_PLATFORM);
	ph_step("VHOST_SET_FEATURES", ioctl(vfd, VHOST_SET_FEATURES, &features));
	ph_step("status FEATURES_OK", set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
					      VIRTIO_CONFIG_S_FEATURES_OK));
	ph_step("IOTLB update of the rings", iotlb(anon, anon_len, VHOST_IOTLB_UPDATE));
	/* the pin under test */
	int pin_errno = 0;
	if (!ph_setup_errno && iotlb(map, len, VHOST_IOTLB_UPDATE))
		pin_errno = errno;

	printf("{\"workload\": \"vhost_vdpa\", \"pages\": %zu, \"device\": \"%s\", \"flags_held\": ", pages, dev);
	ph_flags_json(stdout, map, pages);
	struct ph_wb wb = {0, 0, 0, 0};
	uint16_t rx_used = 0, tx_used = 0;
	size_t b_in_memory = 0;
	if (!ph_setup_errno && !pin_errno) {
		if (!setup_vq(RX, &q[RX]) && !setup_vq(TX, &q[TX]))
			ph_step("status DRIVER_OK", set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
							    VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK));
		wb = ph_writeback_and_reclaim(fd, map, pages, cgroup, do_reclaim); /* pin held */
		if (!ph_setup_errno) {
			/* the device: the simulator loops every transmitted frame into a pinned receive page */
			for (unsigned i = 0; i < pages; i++) {
				post(&q[RX], i, map + (size_t)i * PH_PAGE, PH_PAGE, VRING_DESC_F_WRITE);
				post(&q[TX], i, txbuf + (size_t)i * PH_PAGE, PH_PAGE, 0);
			}
			__atomic_store_n(&q[RX].avail->idx, (uint16_t)pages, __ATOMIC_RELEASE);
			__atomic_store_n(&q[TX].avail->idx, (uint16_t)pages, __ATOMIC_RELEASE);
			uint64_t one = 1;
			if (write(q[RX].kick, &one, 8) != 8 || write(q[TX].kick, &one, 8) != 8)
				ph_step("kick", -1);
			double deadline = ph_now() + 30;
			while ((rx_used = __atomic_load_n(&q[RX].used->idx, __ATOMIC_ACQUIRE)) < pages && ph_now() < deadline)
				usleep(10000);
			tx_used = __atomic_load_n(&q[TX].used->idx, __ATOMIC_ACQUIRE);
			if (rx_used < pages) { /* the device did not write: no outcome to judge */
				errno = ETIMEDOUT;
				ph_step("loopback: not every frame came back in 30 s", -1);
			}
		}
		for (size_t i = 0; i < pages; i++)
			b_in_memory += ph_classify_region(map + i * PH_PAGE, REGION_OFF, REGION_LEN) == 'B';
		set_status(0); /* stop the device before its memory goes */
		if (iotlb(map, len, VHOST_IOTLB_INVALIDATE)) /* unpin: set_page_dirty_lock + unpin_user_page */
			ph_step("IOTLB invalidate", -1);
	}
	close(vfd);
	ph_unmap_file(map, pages, fd);
	ph_vmstat(vm1);
	printf(", \"features\": \"0x%llx\", \"tx_used\": %u, \"rx_used\": %u", (unsigned long long)features, tx_used, rx_used);
	ph_print_result(pin_errno, &wb, b_in_memory, vm0, vm1);
	return 0;
}
