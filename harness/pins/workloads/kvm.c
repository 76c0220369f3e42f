/* kvm: a minimal L2 VM run through /dev/kvm inside the guest whose memory is
 * the MAP_SHARED file mapping (the seeds' secondary-MMU scenario): KVM maps
 * the file pages into its own page tables (no long-term pin; it follows MMU
 * notifiers). The L2 code copies a pattern over the file region: C in the
 * first round, B in the last; before the last, writeback and reclaim run
 * (fsync, memory.reclaim). Unlike the pinning
 * drivers KVM must get a fresh, page_mkwrite'd mapping after each invalidation.
 *
 * Memory slots: 0 = code (anon, gpa 0), 1 = the file (gpa 0x10000, <= 16 pages),
 * 2 = the source pattern (anon, gpa 0x20000).
 * x86-64: the L2 runs in real mode:
 *   mov ax,0x2000; mov ds,ax; mov ax,0x1000; mov es,ax; xor si,si; xor di,di;
 *   mov cx,LEN/2; cld; rep movsw; hlt
 * arm64 (the guest booted at EL2: QEMU -M virt,virtualization=on): the L2 runs at EL1, MMU off:
 *   movz x0,#2,lsl#16; movz x1,#1,lsl#16; movz x2,#LEN/8
 *   1: ldr x3,[x0],#8; str x3,[x1],#8; subs x2,x2,#1; b.ne 1b
 *   movz x0,#8; movk x0,#0x8400,lsl#16; hvc #0
 * PSCI SYSTEM_OFF is x86's hlt: KVM_EXIT_SYSTEM_EVENT (an MMIO write would do, but TCG's stage-2
 * aborts carry no syndrome, and KVM cannot decode them); each round re-inits the powered-off vCPU.
 *
 * args: file=PATH pages=N cgroup=DIR [reclaim=1] [rounds=2]
 *       mode=verify file=PATH pages=N
 */
#include "common.h"
#include <linux/kvm.h>
#include <signal.h>
#include <sys/ioctl.h>

#define GPA_FILE 0x10000ULL
#define GPA_SRC 0x20000ULL

#if defined(__aarch64__)
#include <stddef.h> /* offsetof, in KVM_REG_ARM_CORE_REG */
#define EXIT_DONE KVM_EXIT_SYSTEM_EVENT
static size_t l2_program(unsigned char *code, size_t len)
{
	uint32_t prog[] = {
		0xd2a00040,				 /* movz x0, #0x2, lsl #16 */
		0xd2a00021,				 /* movz x1, #0x1, lsl #16 */
		0xd2800002 | (uint32_t)((len / 8) << 5), /* movz x2, #len/8 */
		0xf8408403,				 /* ldr x3, [x0], #8 */
		0xf8008423,				 /* str x3, [x1], #8 */
		0xf1000442,				 /* subs x2, x2, #1 */
		0x54ffffa1,				 /* b.ne -12 */
		0xd2800100,				 /* movz x0, #0x8 */
		0xf2b08000,				 /* movk x0, #0x8400, lsl #16: PSCI SYSTEM_OFF */
		0xd4000002,				 /* hvc #0 */
	};
	memcpy(code, prog, sizeof(prog));
	return sizeof(prog);
}

static void vcpu_setup(int vmfd, int vcpu, int first)
{
	(void)first; /* every round: SYSTEM_OFF powered the vCPU off, an init resets it */
	struct kvm_vcpu_init init;
	if (ioctl(vmfd, KVM_ARM_PREFERRED_TARGET, &init))
		ph_die("KVM_ARM_PREFERRED_TARGET");
	init.features[0] |= 1u << KVM_ARM_VCPU_PSCI_0_2; /* else 0x84000008 is no PSCI call and the L2 runs on */
	if (ioctl(vcpu, KVM_ARM_VCPU_INIT, &init))
		ph_die("KVM_ARM_VCPU_INIT");
	uint64_t pc = 0;
	struct kvm_one_reg reg = {.id = KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE |
					 KVM_REG_ARM_CORE_REG(regs.pc),
				  .addr = (uintptr_t)&pc};
	if (ioctl(vcpu, KVM_SET_ONE_REG, &reg))
		ph_die("KVM_SET_ONE_REG(pc)");
}
#else
#define EXIT_DONE KVM_EXIT_HLT
static size_t l2_program(unsigned char *code, size_t len)
{
	unsigned words = (unsigned)(len / 2);
	unsigned char prog[] = {0xb8, 0x00, 0x20, 0x8e, 0xd8, 0xb8, 0x00, 0x10, 0x8e, 0xc0, 0x31, 0xf6, 0x31, 0xff,
				0xb9, (unsigned char)(words & 0xff), (unsigned char)(words >> 8), 0xfc, 0xf3, 0xa5, 0xf4};
	memcpy(code, prog, sizeof(prog));
	return sizeof(prog);
}

static void vcpu_setup(int vmfd, int vcpu, int first)
{
	(void)vmfd, (void)first;
	struct kvm_sregs sregs;
	struct kvm_regs regs = {.rip = 0, .rflags = 2};
	if (ioctl(vcpu, KVM_GET_SREGS, &sregs))
		ph_die("KVM_GET_SREGS");
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	if (ioctl(vcpu, KVM_SET_SREGS, &sregs) || ioctl(vcpu, KVM_SET_REGS, &regs))
		ph_die("KVM_SET_REGS");
}
#endif

static void on_alarm(int sig)
{
	(void)sig; /* KVM_RUN returns EINTR: an L2 that never exits ends the workload, not the cell's timeout */
}

static int ph_sum(const int *v, int n)
{
	int sum = 0;
	for (int i = 0; i < n; i++)
		sum += v[i];
	return sum;
}

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
	l2_program(code, len);
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
	int exits[32] = {0}, runs_ok = 0;
	size_t b_in_memory = 0;
	for (int round = 0; round < rounds && !pin_errno; round++) {
		vcpu_setup(vmfd, vcpu, round == 0);
		if (round == rounds - 1) {
			for (size_t i = 0; i < pages; i++)
				ph_fill(src + i * PH_PAGE, 'B', i);
			/* between the rounds: writeback cleans the pages, reclaim strips their buffers */
			wb = ph_writeback_and_reclaim(fd, map, pages, cgroup, do_reclaim); /* pin held */
		}
		struct sigaction sa = {.sa_handler = on_alarm}; /* no SA_RESTART */
		sigaction(SIGALRM, &sa, NULL);
		alarm(120);
		for (int step = 0; step < 100; step++) {
			if (ioctl(vcpu, KVM_RUN, 0) < 0)
				ph_die(errno == EINTR ? "KVM_RUN (the L2 did not exit in 120 s)" : "KVM_RUN");
			exits[run->exit_reason < 32 ? run->exit_reason : 31]++;
			if (run->exit_reason == EXIT_DONE) {
				runs_ok++;
				break;
			}
			if (run->exit_reason != KVM_EXIT_INTR)
				break;
		}
		alarm(0);
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
	       pin_errno, pin_errno ? strerror(pin_errno) : "", runs_ok, exits[EXIT_DONE],
	       ph_sum(exits, 32) - exits[EXIT_DONE], wb.fsync_ret, wb.reclaim_err,
	       wb.private_before, wb.private_after, b_in_memory);
	ph_vmstat_delta_json(stdout, vm0, vm1);
	printf("}\n");
	return runs_ok == rounds || pin_errno ? 0 : 3;
}
