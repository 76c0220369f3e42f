/* vhost_net: the vhost-net user-space interface with its receive ring and
 * buffers in the MAP_SHARED file mapping. /dev/vhost-net gets the mapping as
 * its memory table, a tap device as backend, and the file's pages as receive
 * buffers; writeback cleans them and reclaim strips their buffers (or evicts
 * them), then frames sent out of the tap are written into the pages by the
 * vhost worker. vhost-net takes no page pin: the worker copies with uaccess in
 * our mm (kthread_use_mm), so its writes fault through ->page_mkwrite like ours.
 * The run reports "pin" errno 0 and the vmstat pin counters show no pin taken.
 *
 * args: file=PATH pages=N cgroup=DIR [reclaim=1] [tap=phtap0]
 *       mode=verify file=PATH pages=N   (checks the received-payload region)
 * A received page: 12-byte virtio_net_hdr_mrg_rxbuf, 14-byte Ethernet header, 'B' payload.
 * The ring lives in one more page of the file, after the data pages.
 */
#include "net.h"
#include <linux/if_tun.h>
#include <linux/vhost.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>

#define QSIZE 64
#define HDR 12 /* struct virtio_net_hdr_mrg_rxbuf (VIRTIO_F_VERSION_1) */
#define REGION_OFF (HDR + PH_ETH_HLEN)
#define RX 0

/* A tap device without IPv6 (no autoconf frames in our receive ring), up. */
static int make_tap(const char *name)
{
	struct ifreq ifr;
	char path[128];
	int tap = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (ph_step("open /dev/net/tun", tap) < 0)
		return -1;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	if (ph_step("TUNSETIFF", ioctl(tap, TUNSETIFF, &ifr)))
		return -1;
	snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/disable_ipv6", name);
	int v6 = open(path, O_WRONLY);
	if (v6 >= 0) {
		if (write(v6, "1", 1) != 1)
			ph_step("disable_ipv6", -1);
		close(v6);
	}
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (ph_step("SIOCGIFFLAGS", s < 0 ? -1 : ioctl(s, SIOCGIFFLAGS, &ifr)) == 0) {
		ifr.ifr_flags |= IFF_UP;
		ph_step("SIOCSIFFLAGS", ioctl(s, SIOCSIFFLAGS, &ifr));
	}
	if (s >= 0)
		close(s);
	return tap;
}

int main(int argc, char **argv)
{
	struct ph_opts o = ph_opts(argc, argv, REGION_OFF, PH_PAYLOAD); /* mode=verify: verifies and exits */
	const char *file = o.file;
	size_t pages = o.pages;
	const char *cgroup = o.cgroup, *tapname = ph_arg(argc, argv, "tap", "phtap0");
	int do_reclaim = o.reclaim;
	long long vm0[PH_VMSTAT_KEYS], vm1[PH_VMSTAT_KEYS];
	if (pages > QSIZE)
		pages = QSIZE;

	int fd;
	unsigned char *map = ph_map_file(file, pages + 1, &fd); /* + the ring page */
	size_t len = pages * PH_PAGE;
	unsigned char *ring = map + len;
	struct vring_desc *desc = (struct vring_desc *)ring;
	struct vring_avail *avail = (struct vring_avail *)(ring + 1024);
	struct vring_used *used = (struct vring_used *)(ring + 2048);
	memset(ring, 0, PH_PAGE);
	ph_vmstat(vm0);

	int vfd = open("/dev/vhost-net", O_RDWR | O_CLOEXEC);
	if (vfd < 0)
		ph_die("open /dev/vhost-net");
	uint64_t features = 0;
	ph_step("VHOST_SET_OWNER", ioctl(vfd, VHOST_SET_OWNER));
	ph_step("VHOST_GET_FEATURES", ioctl(vfd, VHOST_GET_FEATURES, &features));
	features &= (1ULL << VIRTIO_F_VERSION_1) | (1ULL << VHOST_NET_F_VIRTIO_NET_HDR);
	ph_step("VHOST_SET_FEATURES", ioctl(vfd, VHOST_SET_FEATURES, &features));
	/* the memory table: the whole file mapping, guest-physical == user address */
	struct {
		struct vhost_memory m;
		struct vhost_memory_region r;
	} mem;
	memset(&mem, 0, sizeof(mem));
	mem.m.nregions = 1;
	mem.r.guest_phys_addr = mem.r.userspace_addr = (uintptr_t)map;
	mem.r.memory_size = len + PH_PAGE;
	/* what other pinning workloads call the pin: here it only records addresses */
	int pin_errno = ioctl(vfd, VHOST_SET_MEM_TABLE, &mem) ? errno : 0;
	int kick = eventfd(0, EFD_CLOEXEC), call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), tap = -1;
	struct vhost_vring_state num = {.index = RX, .num = QSIZE}, base = {.index = RX, .num = 0};
	struct vhost_vring_addr addr = {.index = RX, .desc_user_addr = (uintptr_t)desc,
					.avail_user_addr = (uintptr_t)avail, .used_user_addr = (uintptr_t)used};
	struct vhost_vring_file kf = {.index = RX, .fd = kick}, cf = {.index = RX, .fd = call};
	if (!pin_errno) {
		ph_step("VHOST_SET_VRING_NUM", ioctl(vfd, VHOST_SET_VRING_NUM, &num));
		ph_step("VHOST_SET_VRING_BASE", ioctl(vfd, VHOST_SET_VRING_BASE, &base));
		ph_step("VHOST_SET_VRING_ADDR", ioctl(vfd, VHOST_SET_VRING_ADDR, &addr));
		ph_step("VHOST_SET_VRING_KICK", ioctl(vfd, VHOST_SET_VRING_KICK, &kf));
		ph_step("VHOST_SET_VRING_CALL", ioctl(vfd, VHOST_SET_VRING_CALL, &cf));
		tap = make_tap(tapname);
		struct vhost_vring_file backend = {.index = RX, .fd = tap};
		if (tap >= 0)
			ph_step("VHOST_NET_SET_BACKEND", ioctl(vfd, VHOST_NET_SET_BACKEND, &backend));
	}

	printf("{\"workload\": \"vhost_net\", \"pages\": %zu, \"tap\": \"%s\", \"flags_held\": ", pages, tapname);
	ph_flags_json(stdout, map, pages);
	struct ph_wb wb = {0, 0, 0, 0};
	int sent = 0;
	uint16_t rx_used = 0;
	size_t b_in_memory = 0;
	if (!pin_errno) {
		wb = ph_writeback_and_reclaim(fd, map, pages, cgroup, do_reclaim); /* the vhost device is set up */
		if (!ph_setup_errno) {
			for (unsigned i = 0; i < pages; i++) {
				desc[i].addr = (uintptr_t)(map + (size_t)i * PH_PAGE);
				desc[i].len = PH_PAGE;
				desc[i].flags = VRING_DESC_F_WRITE;
				avail->ring[i] = (uint16_t)i;
			}
			__atomic_store_n(&avail->idx, (uint16_t)pages, __ATOMIC_RELEASE);
			uint64_t one = 1;
			if (write(kick, &one, 8) != 8)
				ph_step("kick", -1);
			/* the device: frames the kernel transmits on the tap land in our receive buffers */
			if ((sent = ph_send_frames(tapname, pages)) < 0)
				ph_step("AF_PACKET socket", -1);
			double deadline = ph_now() + 30;
			while ((rx_used = __atomic_load_n(&used->idx, __ATOMIC_ACQUIRE)) < sent && ph_now() < deadline)
				usleep(10000);
			if (rx_used < pages) { /* the device did not write: no outcome to judge */
				errno = ETIMEDOUT;
				ph_step("receive: not every frame arrived in 30 s", -1);
			}
		}
		for (size_t i = 0; i < pages; i++)
			b_in_memory += ph_classify_region(map + i * PH_PAGE, REGION_OFF, PH_PAYLOAD) == 'B';
		struct vhost_vring_file detach = {.index = RX, .fd = -1};
		ioctl(vfd, VHOST_NET_SET_BACKEND, &detach);
	}
	close(vfd); /* the device goes: nothing to unpin */
	if (tap >= 0)
		close(tap);
	munmap(ring, PH_PAGE);
	ph_unmap_file(map, pages, fd);
	ph_vmstat(vm1);
	printf(", \"features\": \"0x%llx\", \"frames_sent\": %d, \"rx_used\": %u", (unsigned long long)features, sent, rx_used);
	ph_print_result(pin_errno, &wb, b_in_memory, vm0, vm1);
	return 0;
}
