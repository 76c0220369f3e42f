/* gup_test: the kernel's own GUP test device (CONFIG_GUP_TEST, debugfs
 * gup_test) takes a FOLL_LONGTERM|FOLL_WRITE pin of the MAP_SHARED mapping
 * (PIN_LONGTERM_BENCHMARK) and drops it: a probe of the pin policy alone (no
 * device write, no dirtying at unpin). gup_test swallows GUP's errno and
 * reports how much it pinned; 0 bytes pinned is reported as EFAULT (what
 * check_vma_flags() returns) with "errno_inferred": true.
 *
 * args: file=PATH pages=N          mode=verify file=PATH pages=N
 */
#include "common.h"
#include <linux/types.h>
#include <sys/ioctl.h>

#define GUP_TEST_MAX_PAGES_TO_DUMP 8
struct gup_test {
	__u64 get_delta_usec;
	__u64 put_delta_usec;
	__u64 addr;
	__u64 size;
	__u32 nr_pages_per_call;
	__u32 gup_flags;
	__u32 test_flags;
	__u32 which_pages[GUP_TEST_MAX_PAGES_TO_DUMP];
};
#define PIN_LONGTERM_BENCHMARK _IOWR('g', 3, struct gup_test)
#define PH_FOLL_WRITE 0x01

int main(int argc, char **argv)
{
	struct ph_opts o = ph_opts(argc, argv, 0, 0); /* mode=verify: verifies and exits */
	const char *file = o.file;
	size_t pages = o.pages;
	const char *dev = ph_arg(argc, argv, "dev", "/sys/kernel/debug/gup_test");
	long long vm0[PH_VMSTAT_KEYS], vm1[PH_VMSTAT_KEYS];
	int fd;
	unsigned char *map = ph_map_file(file, pages, &fd);
	size_t len = pages * PH_PAGE;
	int gfd = open(dev, O_RDWR);
	if (gfd < 0)
		ph_die("open gup_test (CONFIG_GUP_TEST, debugfs)");
	ph_vmstat(vm0);
	struct gup_test g = {.addr = (uintptr_t)map, .size = len, .nr_pages_per_call = (__u32)pages,
			     .gup_flags = PH_FOLL_WRITE};
	int ioctl_errno = ioctl(gfd, PIN_LONGTERM_BENCHMARK, &g) ? errno : 0;
	int pin_errno = ioctl_errno ? ioctl_errno : (g.size == 0 ? EFAULT : 0);
	ph_vmstat(vm1);
	printf("{\"workload\": \"gup_test\", \"pages\": %zu, \"flags_held\": ", pages);
	ph_flags_json(stdout, map, pages);
	printf(", \"pin\": {\"errno\": %d, \"strerror\": \"%s\", \"errno_inferred\": %s, \"pinned_bytes\": %llu}, "
	       "\"device_wrote_B\": 0, \"vmstat_delta\": ",
	       pin_errno, pin_errno ? strerror(pin_errno) : "", ioctl_errno || !pin_errno ? "false" : "true",
	       (unsigned long long)g.size);
	ph_vmstat_delta_json(stdout, vm0, vm1);
	printf("}\n");
	close(gfd);
	munmap(map, len);
	close(fd);
	return 0;
}
