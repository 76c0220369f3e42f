/* af_xdp: register the MAP_SHARED file mapping as an AF_XDP umem
 * (XDP_UMEM_REG: a FOLL_LONGTERM|FOLL_WRITE pin; syzbot's "WARNING in
 * ext4_dirty_folio" path), bind the socket to veth0 in copy mode behind an XDP
 * program that redirects every frame to it, let writeback clean the pages and
 * reclaim strip their buffers, then send frames from the veth peer: the kernel
 * copies them into the umem (the "device" writes pattern B at frame offset 256).
 * Closing the socket unpins the pages dirty.
 *
 * args: file=PATH pages=N ifname=veth0 peer=veth1 cgroup=DIR [reclaim=1]
 *       mode=verify file=PATH pages=N        (checks the received-payload region)
 */
#include "net.h"
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <sys/syscall.h>

#ifndef SOL_XDP
#define SOL_XDP 283
#endif
#define RING 64
#define HEADROOM 256 /* XDP_PACKET_HEADROOM: where copy mode puts the frame in a umem chunk */
#define REGION_OFF (HEADROOM + PH_ETH_HLEN)

static long bpf(int cmd, union bpf_attr *attr)
{
	return syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}

int main(int argc, char **argv)
{
	struct ph_opts o = ph_opts(argc, argv, REGION_OFF, PH_PAYLOAD); /* mode=verify: verifies and exits */
	const char *file = o.file;
	size_t pages = o.pages;
	const char *ifname = ph_arg(argc, argv, "ifname", "veth0"), *peer = ph_arg(argc, argv, "peer", "veth1");
	const char *cgroup = o.cgroup;
	int do_reclaim = o.reclaim;
	long long vm0[PH_VMSTAT_KEYS], vm1[PH_VMSTAT_KEYS];
	if (pages > RING)
		pages = RING;

	int fd;
	unsigned char *map = ph_map_file(file, pages, &fd);
	size_t len = pages * PH_PAGE;
	ph_vmstat(vm0);
	int xsk = socket(AF_XDP, SOCK_RAW, 0);
	if (xsk < 0)
		ph_die("socket(AF_XDP)");
	/* the pin under test */
	struct xdp_umem_reg mr = {.addr = (uintptr_t)map, .len = len, .chunk_size = PH_PAGE, .headroom = 0};
	int pin_errno = setsockopt(xsk, SOL_XDP, XDP_UMEM_REG, &mr, sizeof(mr)) ? errno : 0;

	printf("{\"workload\": \"af_xdp\", \"pages\": %zu, \"ifname\": \"%s\", \"flags_held\": ", pages, ifname);
	ph_flags_json(stdout, map, pages);
	struct ph_wb wb = {0, 0, 0, 0};
	int received = 0, sent = 0;
	size_t b_in_memory = 0;
	if (!pin_errno) {
		int n = RING;
		struct xdp_mmap_offsets off;
		socklen_t ol = sizeof(off);
		if (setsockopt(xsk, SOL_XDP, XDP_UMEM_FILL_RING, &n, sizeof(n)) ||
		    setsockopt(xsk, SOL_XDP, XDP_UMEM_COMPLETION_RING, &n, sizeof(n)) ||
		    setsockopt(xsk, SOL_XDP, XDP_RX_RING, &n, sizeof(n)) ||
		    getsockopt(xsk, SOL_XDP, XDP_MMAP_OFFSETS, &off, &ol)) {
			ph_step("rings", -1);
		}
		char *fr = NULL, *rx = NULL;
		if (!ph_setup_errno) {
			fr = mmap(NULL, off.fr.desc + RING * sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
				  xsk, XDP_UMEM_PGOFF_FILL_RING);
			rx = mmap(NULL, off.rx.desc + RING * sizeof(struct xdp_desc), PROT_READ | PROT_WRITE,
				  MAP_SHARED | MAP_POPULATE, xsk, XDP_PGOFF_RX_RING);
			if (fr == MAP_FAILED || rx == MAP_FAILED) {
				ph_step("ring mmap", -1);
			}
		}
		if (!ph_setup_errno) {
			uint32_t *prod = (uint32_t *)(fr + off.fr.producer);
			uint64_t *descs = (uint64_t *)(fr + off.fr.desc);
			for (size_t i = 0; i < pages; i++)
				descs[i] = i * PH_PAGE;
			__atomic_store_n(prod, (uint32_t)pages, __ATOMIC_RELEASE);
			struct sockaddr_xdp sx = {.sxdp_family = AF_XDP, .sxdp_ifindex = if_nametoindex(ifname),
						  .sxdp_queue_id = 0, .sxdp_flags = XDP_COPY};
			if (bind(xsk, (struct sockaddr *)&sx, sizeof(sx))) {
				ph_step("bind", -1);
			}
		}
		int map_fd = -1, prog_fd = -1, link_fd = -1;
		if (!ph_setup_errno) {
			union bpf_attr a;
			memset(&a, 0, sizeof(a));
			a.map_type = BPF_MAP_TYPE_XSKMAP;
			a.key_size = 4;
			a.value_size = 4;
			a.max_entries = 1;
			map_fd = (int)bpf(BPF_MAP_CREATE, &a);
			uint32_t key = 0, val = (uint32_t)xsk;
			memset(&a, 0, sizeof(a));
			a.map_fd = (uint32_t)map_fd;
			a.key = (uintptr_t)&key;
			a.value = (uintptr_t)&val;
			if (map_fd < 0 || bpf(BPF_MAP_UPDATE_ELEM, &a)) {
				ph_step("xskmap", -1);
			}
		}
		if (!ph_setup_errno) {
			/* r2 = ctx->rx_queue_index; r1 = xskmap; r3 = XDP_PASS; return bpf_redirect_map(r1, r2, r3) */
			struct bpf_insn prog[] = {
				{.code = BPF_LDX | BPF_MEM | BPF_W, .dst_reg = 2, .src_reg = 1, .off = 16},
				{.code = BPF_LD | BPF_IMM | BPF_DW, .dst_reg = 1, .src_reg = BPF_PSEUDO_MAP_FD, .imm = map_fd},
				{.code = 0},
				{.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = 3, .imm = XDP_PASS},
				{.code = BPF_JMP | BPF_CALL, .imm = BPF_FUNC_redirect_map},
				{.code = BPF_JMP | BPF_EXIT},
			};
			static char log[4096];
			union bpf_attr a;
			memset(&a, 0, sizeof(a));
			a.prog_type = BPF_PROG_TYPE_XDP;
			a.insns = (uintptr_t)prog;
			a.insn_cnt = sizeof(prog) / sizeof(prog[0]);
			a.license = (uintptr_t) "GPL";
			a.log_buf = (uintptr_t)log;
			a.log_size = sizeof(log);
			a.log_level = 1;
			prog_fd = (int)bpf(BPF_PROG_LOAD, &a);
			memset(&a, 0, sizeof(a));
			a.link_create.prog_fd = (uint32_t)prog_fd;
			a.link_create.target_ifindex = if_nametoindex(ifname);
			a.link_create.attach_type = BPF_XDP;
			a.link_create.flags = XDP_FLAGS_SKB_MODE;
			if (prog_fd < 0 || (link_fd = (int)bpf(BPF_LINK_CREATE, &a)) < 0) {
				ph_step(prog_fd < 0 ? "prog load" : "link create", -1);
			}
		}
		wb = ph_writeback_and_reclaim(fd, map, pages, cgroup, do_reclaim); /* pin held */
		if (!ph_setup_errno) {
			/* the device: frames from the peer, copied by the kernel into the umem */
			if ((sent = ph_send_frames(peer, pages)) < 0) {
				ph_step("AF_PACKET socket", -1);
				sent = 0;
			}
			uint32_t *rprod = (uint32_t *)(rx + off.rx.producer), *rcons = (uint32_t *)(rx + off.rx.consumer);
			double deadline = ph_now() + 20;
			while ((received = (int)(__atomic_load_n(rprod, __ATOMIC_ACQUIRE) - *rcons)) < sent && ph_now() < deadline)
				usleep(10000);
			__atomic_store_n(rcons, *rcons + (uint32_t)received, __ATOMIC_RELEASE);
		}
		for (size_t i = 0; i < pages; i++)
			b_in_memory += ph_classify_region(map + i * PH_PAGE, REGION_OFF, PH_PAYLOAD) == 'B';
		if (link_fd >= 0)
			close(link_fd);
		if (prog_fd >= 0)
			close(prog_fd);
		if (map_fd >= 0)
			close(map_fd);
	}
	close(xsk); /* umem release: unpin_user_pages_dirty_lock() on every page (maybe deferred) */
	usleep(500000);
	ph_unmap_file(map, pages, fd);
	ph_vmstat(vm1);
	printf(", \"frames_sent\": %d, \"frames_received\": %d", sent, received);
	ph_print_result(pin_errno, &wb, b_in_memory, vm0, vm1);
	return 0;
}
