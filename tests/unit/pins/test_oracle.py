"""Outcome classification and the expectation table (pure logic)."""
import errno
from dataclasses import dataclass, field

import pytest

from harness.pins import oracle
from harness.pins.workloads import WorkloadRun


@dataclass
class R:  # a crash report as the parser gives it (only what the oracle reads)
    title: str
    type: str


def _run(pin_errno=0, device=16, on_disk_b=16, pins=None):
    return WorkloadRun("odirect", "ext4", ("reclaim",), {"pin": {"errno": pin_errno}, "device_wrote_B": device},
                       {"B": on_disk_b, "A": 16 - on_disk_b}, "", pins=pins or {})


def test_table_loads_and_every_row_is_well_formed():
    rows = oracle.load()
    assert rows
    for row in rows:
        kinds = {k for k, _ in row.facets}
        assert kinds <= {"PROTECTED", "CLEAN", "WARNING", "CRASH", "DATA-LOSS", "PIN-LEAK"}, row
        assert row.why


@pytest.mark.parametrize("version,workload,fs,stressors,expect", [
    ((6, 1, 0), "odirect", "ext4", ("reclaim",), "WARNING(WARNING in ext4_dirty_folio)+DATA-LOSS(all)"),
    ((6, 12, 117), "odirect", "ext4", ("reclaim",), "CLEAN"),
    ((6, 12, 117), "odirect", "ext4", ("reclaim", "bh-fill", "mglru-off"),
     "WARNING(WARNING in ext4_dirty_folio)+DATA-LOSS(all)"),
    ((6, 1, 0), "odirect", "xfs", ("reclaim",), "CLEAN"),
    ((6, 1, 0), "io_uring", "xfs", ("none",), "PROTECTED(EOPNOTSUPP)"),
    ((6, 12, 117), "io_uring", "ext4", ("none",), "PROTECTED(EFAULT)"),
])
def test_expectations(version, workload, fs, stressors, expect):
    assert oracle.expectation(version, workload, fs, stressors).expect == expect


def test_no_row_means_no_oracle():
    v = oracle.verdict(oracle.classify(_run(), []), oracle.expectation((6, 1), "nonesuch", "ext4", ("none",)))
    assert v.status == "NO-ORACLE" and not v.ok


def test_known_bug_reproduced():
    exp = oracle.expectation((6, 1, 0), "odirect", "ext4", ("reclaim",))
    out = oracle.classify(_run(on_disk_b=0), [R("WARNING in ext4_dirty_folio", "WARNING")])
    assert out.kind == "DATA-LOSS" and out.lost_pages == 16
    assert str(out) == "WARNING(WARNING in ext4_dirty_folio)+DATA-LOSS(16)"
    v = oracle.verdict(out, exp)
    assert v.ok and v.status == "KNOWN-BUG"


def test_known_bug_fixed_is_not_ok():
    exp = oracle.expectation((6, 1, 0), "odirect", "ext4", ("reclaim",))
    v = oracle.verdict(oracle.classify(_run(), []), exp)
    assert not v.ok and "no 'WARNING in ext4_dirty_folio'" in v.detail


def test_partial_loss_is_not_all():
    exp = oracle.expectation((6, 1, 0), "odirect", "ext4", ("reclaim",))
    v = oracle.verdict(oracle.classify(_run(on_disk_b=10), [R("WARNING in ext4_dirty_folio", "WARNING")]), exp)
    assert not v.ok and "lost 6 of 16 pages, expected all" in v.detail


def test_protected_and_unexpected_allow_refuse():
    exp = oracle.expectation((6, 12, 1), "io_uring", "ext4", ("none",))
    refused = oracle.classify(_run(pin_errno=errno.EFAULT, device=0), [])
    assert refused.kind == "PROTECTED" and str(refused) == "PROTECTED(EFAULT)"
    assert oracle.verdict(refused, exp).status == "EXPECTED"
    wrong_errno = oracle.verdict(oracle.classify(_run(pin_errno=errno.EPERM, device=0), []), exp)
    assert not wrong_errno.ok and "refused with EPERM" in wrong_errno.detail
    assert oracle.verdict(oracle.classify(_run(), []), exp).status == "UNEXPECTED-ALLOW"
    clean_exp = oracle.expectation((6, 12, 1), "odirect", "xfs", ("reclaim",))
    assert oracle.verdict(refused, clean_exp).status == "UNEXPECTED-REFUSE"


def test_crash_and_pin_leak_rank_above_warnings():
    crash = oracle.classify(_run(), [R("kernel BUG in ext4_writepages", "BUG"), R("WARNING in x", "WARNING")])
    assert crash.kind == "CRASH" and crash.crash_titles == ("kernel BUG in ext4_writepages",)
    leak = oracle.classify(_run(pins={"before": {"nr_foll_pin_acquired": 10, "nr_foll_pin_released": 10},
                                      "after": {"nr_foll_pin_acquired": 30, "nr_foll_pin_released": 26}}), [])
    assert leak.kind == "PIN-LEAK" and leak.pin_leak == 4
    v = oracle.verdict(leak, oracle.expectation((6, 1, 0), "odirect", "xfs", ("reclaim",)))
    assert not v.ok and "pin leak of 4" in v.detail


def test_clean_cell_with_unexpected_warning_fails():
    exp = oracle.expectation((6, 12, 0), "odirect", "ext4", ("reclaim",))
    v = oracle.verdict(oracle.classify(_run(), [R("WARNING in ext4_dirty_folio", "WARNING")]), exp)
    assert not v.ok


@pytest.mark.parametrize("rule,version,ok", [
    ("<6.5", (6, 1, 0), True), ("<6.5", (6, 5, 0), False), (">=6.5", (6, 12, 117), True),
    ("*", (1,), True), ("6.1", (6, 1, 192), True), ("6.1", (6, 12, 0), False),
])
def test_version_rules(rule, version, ok):
    assert oracle._version_matches(rule, version) is ok


@pytest.mark.parametrize("rule,config,ok", [
    ("<6.5 LRU_GEN_ENABLED", {"CONFIG_LRU_GEN_ENABLED": "y"}, True),
    ("<6.5 LRU_GEN_ENABLED", {"CONFIG_LRU_GEN_ENABLED": "n"}, False),
    ("<6.5 !LRU_GEN_ENABLED", {"CONFIG_LRU_GEN": "y"}, True),
    ("<6.5 LRU_GEN_ENABLED", {}, False),  # unknown config matches no config condition
    ("<6.5", {}, True),
])
def test_kernel_rules_with_config_conditions(rule, config, ok):
    assert oracle.kernel_matches(rule, (6, 1, 0), config) is ok


def test_mglru_default_changes_the_expectation_for_long_term_pins():
    debian61 = {"CONFIG_LRU_GEN": "y", "CONFIG_LRU_GEN_ENABLED": "n"}
    built = {"CONFIG_LRU_GEN": "y", "CONFIG_LRU_GEN_ENABLED": "y"}
    for w in ("vfio", "rdma", "af_xdp"):
        assert oracle.expectation((6, 1, 0), w, "ext4", ("bh-fill", "reclaim"), config=debian61).bug
        assert oracle.expectation((6, 1, 0), w, "ext4", ("bh-fill", "reclaim"), config=built).expect == "CLEAN"


def test_every_report_type_is_a_crash_a_warning_or_an_event():
    from harness.crash import oopses

    emitted = {o.type for o in oopses.OOPSES} | {f.type for o in oopses.OOPSES for f in o.formats if f.type}
    assert emitted <= set(oopses.TYPES)
    kinds = [oracle.CRASH_TYPES, oracle.WARNING_TYPES, oopses.EVENT_TYPES]
    assert set().union(*kinds) == set(oopses.TYPES)
    assert sum(len(k) for k in kinds) == len(oopses.TYPES)  # each type in exactly one


def test_an_oom_kill_is_neither_crash_nor_warning():
    out = oracle.classify(_run(), [R("OOM kill: hog", "OOM")])
    assert (out.kind, out.titles, out.crash_titles) == ("CLEAN", (), ())
    both = oracle.classify(_run(), [R("OOM kill: hog", "OOM"), R("WARNING in ext4_dirty_folio", "WARNING")])
    assert both.kind == "WARNING" and both.titles == ("WARNING in ext4_dirty_folio",)
    assert str(both) == "WARNING(WARNING in ext4_dirty_folio)"


def test_an_unexpected_reboot_is_a_crash():
    out = oracle.classify(_run(), [R("unexpected kernel reboot", "REBOOT")])
    assert out.kind == "CRASH" and out.crash_titles == ("unexpected kernel reboot",)


@pytest.mark.parametrize("golden_log", ["guest-debian61-odirect-ext4-warning",
                                        "guest-arm64-debian61-odirect-ext4-warning"])
def test_the_known_bug_matches_on_x86_and_arm64_consoles(golden_log):
    # The oracle names the bug by title: an arm64 console must give the x86 one.
    import golden_console
    from harness.crash.console import parse

    text, _ = golden_console.load(golden_log)
    out = oracle.classify(_run(on_disk_b=0), parse(text))
    v = oracle.verdict(out, oracle.expectation((6, 1, 0), "odirect", "ext4", ("reclaim",)))
    assert "WARNING in ext4_dirty_folio" in out.titles and out.lost_pages == 16
    assert v.ok and v.status == "KNOWN-BUG", v.detail
