"""mkclean_race in a real guest, through the matrix's own path (check_cell → run_cell): two vCPUs,
writers on vCPU 0 storing numbers into a MAP_SHARED mapping while vCPU 1 cleans and write-protects
its PTEs; after the remount every page on disk must hold its last number. The oracle says CLEAN
(check_cell asserts it); the assertions here check that the race really ran and what the disk held."""
import pytest

from harness.pytest_plugin import check_cell

pytestmark = pytest.mark.vm

# the CI tier runs the ext4 cell (on each VM-test kernel); xfs and the large-folio variant are slow-tier
CELLS = [("mkclean_race", "ext4", ()), ("mkclean_race", "xfs", (pytest.mark.slow,)),
         ("mkclean_race_thp", "xfs", (pytest.mark.slow,))]


@pytest.mark.parametrize("workload,fs_type", [pytest.param(w, fs, marks=m, id=f"{w}-{fs}") for w, fs, m in CELLS])
def test_every_page_on_disk_holds_its_last_number(request, ph_session, kernel, kernel_spec, workload, fs_type):
    _check_race(request, ph_session, kernel, kernel_spec, workload, fs_type)


# the seeds' worry is other architectures' TLB flushing: the same race on an arm64 guest (two vCPUs, MTTCG)
@pytest.mark.parametrize("kernel_spec", ["debian:6.1@arm64"], ids=["debian-6.1-arm64"], scope="session")
def test_every_page_on_disk_holds_its_last_number_on_arm64(request, ph_session, kernel, kernel_spec):
    assert kernel.arch == "arm64"
    _check_race(request, ph_session, kernel, kernel_spec, "mkclean_race", "ext4")


def _check_race(request, ph_session, kernel, kernel_spec, workload, fs_type):
    res = check_cell(request, ph_session, kernel, kernel_spec, workload, fs_type, "none", subdir="mkclean")
    result, verify = res.run["result"], res.run["verify"]
    pages = result["pages"]
    # the race ran: two vCPUs online, the writers on 0 and the cleaner on 1, both busy throughout
    assert result["cpus"] == 2 and set(result["writer_cpus"]) == {0} and result["cleaner_cpu"] == 1, result
    assert result["setup_errno"] == 0 and result["msync_errno"] == 0 and result["fsync_errno"] == 0, result
    assert result["clean_cycles"] >= 3 and result["writer_passes"] >= 3 * result["writers"], result
    # writeback wrote every page again and again, and the writers faulted on write-protected entries (one
    # fault per PTE, or per PMD where the folio is PMD-mapped: then fewer faults than pages)
    assert result["nr_written"] >= 3 * pages and result["minor_faults"] >= 3, result
    assert result["pageout_errno"] in (0, 22), result  # 22: EINVAL, a kernel without MADV_PAGEOUT
    # the data: every page written, every page checked on disk, each holding its last number
    assert result["device_wrote_B"] == pages == verify["pages"], (result, verify)
    assert result["memory_regressions"] == 0 and result["memory_mismatch"] == 0, result
    assert verify["B"] == pages, verify
    assert (verify["stale"], verify["A"], verify["regressed"], verify["other"], verify["zero"]) == (0, 0, 0, 0, 0)
    assert res.lost_pages == 0 and res.pin_errno == 0 and res.fsck_clean
    # no pin was taken while it ran (the verify's O_DIRECT reads pin their buffer on >= 6.5: not counted here)
    assert result["vmstat_delta"]["nr_foll_pin_acquired"] == 0, result["vmstat_delta"]
    if result["thp"]:  # what the kernel gave is reported, whatever it is
        for when in ("folios_start", "folios_end"):
            f = result[when]
            assert f["mapped_pages"] <= pages and f["large_folio_heads"] <= f["large_folio_pages"] <= pages, f
