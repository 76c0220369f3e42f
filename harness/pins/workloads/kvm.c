/* kvm: a minimal L2 VM run through /dev/kvm inside the guest whose memory is
 * the MAP_SHARED file mapping (the seeds' secondary-MMU scenario): KVM maps
 * the file pages into its own page tables (no long-term pin; it follows MMU
 * notifiers). The L2 code copies a pattern over the file region: C in the
 * first round, B in the last; before the last, writeback and reclaim run
 * (fsync, memory.reclaim). Unlike the pinning
 * drivers KVM must get a fresh, page_mkwrite'd mapping after each invalidation.
 *
 * Memory slots: 0 = code (anon, gpa 0), 1 = the file (gpa 0x10000, <= 16 pages),
 * 2 = the source pattern (anon, gpa 0x20000). The L2 runs in real mode:
 *   mov ax,0x2000; mov ds,ax; mov ax,0x1000; mov es,ax; xor si,si; xor di,di;
 *   mov cx,LEN/2; cld; rep movsw; hlt
 *
 * args: file=PATH pages=N cgroup=DIR [reclaim=1] [rounds=2]
 *       mode=verify file=PATH pages=N
 */
#include "common.h"
#include <linux/kvm.h>
#include <sys/ioctl.h>

#define GPA_FILE 0x10000ULL
#define GPA_SRC 0x20000ULL

static int set_region(int vmfd, unsigned slot, uint64_t gpa, void *hva, size_t len)
{
	struct kvm_userspace_memory_region r = {.slot = slot, .guest_phys_addr = gpa, .memory_size = len,
						.userspace_addr = (uintptr_t)hva};
	return ioctl(vmfd, KVM_SET_USER_MEMORY_REGION, &r);
}

int main(int argc, char **argv)
{
	struct ph_opts o = ph_opts(argc, argv, 0, 0); /* mode=verify: verifies and exits */
	const char *file = o.file;
	size_t pages = o.pages;
	const char *cgroup = o.cgroup;
	int do_reclaim = o.reclaim, rounds = (int)ph_argl(argc, argv, "rounds", 2);
	long long vm0[PH_VMSTAT_KEYS], vm1[PH_VMSTAT_KEYS];
	if (pages > 16)
		pages = 16; /* one real-mode segment */

	int fd;
	unsigned char *map = ph_map_file(file, pages, &fd);
	size_t len = pages * PH_PAGE;
	unsigned char *code = mmap(NULL, PH_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	unsigned char *src = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (code == MAP_FAILED || src == MAP_FAILED)
		ph_die("mmap");
	for (size_t i = 0; i < pages; i++)
		ph_fill(src + i * PH_PAGE, 'C', i); /* round 0 writes C; the last round writes B */
	unsigned words = (unsigned)(len / 2);
	unsigned char prog[] = {0xb8, 0x00, 0x20, 0x8e, 0xd8, 0xb8, 0x00, 0x10, 0x8e, 0xc0, 0x31, 0xf6, 0x31, 0xff,
				0xb9, (unsigned char)(words & 0xff), (unsigned char)(words >> 8), 0xfc, 0xf3, 0xa5, 0xf4};
	memcpy(code, prog, sizeof(prog));
	ph_vmstat(vm0);

	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	int vmfd = kvm < 0 ? -1 : ioctl(kvm, KVM_CREATE_VM, 0);
	if (vmfd < 0)
		ph_die("KVM_CREATE_VM");
	/* slot 1 is the mapping under test: its "pin" is KVM's secondary-MMU mapping */
	int pin_errno = 0;
	if (set_region(vmfd, 0, 0, code, PH_PAGE) || set_region(vmfd, 2, GPA_SRC, src, len))
		ph_die("KVM_SET_USER_MEMORY_REGION");
	if (set_region(vmfd, 1, GPA_FILE, map, len))
		pin_errno = errno;
	int vcpu = ioctl(vmfd, KVM_CREATE_VCPU, 0);
	int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	struct kvm_run *run = vcpu < 0 ? MAP_FAILED : mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (vcpu < 0 || run == MAP_FAILED)
		ph_die("KVM_CREATE_VCPU");

	printf("{\"workload\": \"kvm\", \"pages\": %zu, \"flags_held\": ", pages);
	ph_flags_json(stdout, map, pages);
	struct ph_wb wb = {0, 0, 0, 0};
	int exits[8] = {0}, runs_ok = 0;
	size_t b_in_memory = 0;
	for (int round = 0; round < rounds && !pin_errno; round++) {
		struct kvm_sregs sregs;
		struct kvm_regs regs = {.rip = 0, .rflags = 2};
		if (ioctl(vcpu, KVM_GET_SREGS, &sregs))
			ph_die("KVM_GET_SREGS");
		sregs.cs.base = 0;
		sregs.cs.selector = 0;
		if (ioctl(vcpu, KVM_SET_SREGS, &sregs) || ioctl(vcpu, KVM_SET_REGS, &regs))
			ph_die("KVM_SET_REGS");
		if (round == rounds - 1) {
			for (size_t i = 0; i < pages; i++)
				ph_fill(src + i * PH_PAGE, 'B', i);
			/* between the rounds: writeback cleans the pages, reclaim strips their buffers */
			wb = ph_writeback_and_reclaim(fd, map, pages, cgroup, do_reclaim); /* pin held */
		}
		for (int step = 0; step < 100; step++) {
			if (ioctl(vcpu, KVM_RUN, 0) < 0)
				ph_die("KVM_RUN");
			exits[run->exit_reason < 8 ? run->exit_reason : 7]++;
			if (run->exit_reason == KVM_EXIT_HLT) {
				runs_ok++;
				break;
			}
			if (run->exit_reason != KVM_EXIT_INTR)
				break;
		}
	}
	for (size_t i = 0; i < pages; i++)
		b_in_memory += ph_classify(map + i * PH_PAGE) == 'B';
	close(vcpu);
	close(vmfd); /* the secondary MMU lets go of the pages */
	close(kvm);
	ph_unmap_file(map, pages, fd);
	ph_vmstat(vm1);
	printf(", \"pin\": {\"errno\": %d, \"strerror\": \"%s\"}, \"rounds_completed\": %d, \"exit_hlt\": %d, "
	       "\"exit_other\": %d, \"fsync_ret\": %d, \"reclaim_errno\": %d, \"buffers_before_reclaim\": %zu, "
	       "\"buffers_after_reclaim\": %zu, \"device_wrote_B\": %zu, \"vmstat_delta\": ",
	       pin_errno, pin_errno ? strerror(pin_errno) : "", runs_ok, exits[KVM_EXIT_HLT],
	       exits[0] + exits[1] + exits[2] + exits[3] + exits[4] + exits[6] + exits[7], wb.fsync_ret, wb.reclaim_err,
	       wb.private_before, wb.private_after, b_in_memory);
	ph_vmstat_delta_json(stdout, vm0, vm1);
	printf("}\n");
	return runs_ok == rounds || pin_errno ? 0 : 3;
}
