"""Finding the cgroup cpu controller for per-vehicle CPU budgets (sim/cpubudget.py)."""

from pathlib import Path

import pytest

from sim.cpubudget import CpuBudget, CpuBudgetError, cpu_cgroup_root

V1 = """tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpuacct cgroup rw,relatime,cpuacct 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
"""


def test_cgroup_v1_cpu_controller_is_preferred():
    assert cpu_cgroup_root(V1) == (Path("/sys/fs/cgroup/cpu"), 1)


def test_cgroup_v2_is_used_when_it_offers_cpu(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    mounts = f"cgroup2 {tmp_path} cgroup2 rw,nosuid 0 0\n"
    assert cpu_cgroup_root(mounts) == (tmp_path, 2)


def test_no_cpu_controller_is_a_clear_error(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("memory pids\n")
    with pytest.raises(CpuBudgetError, match="no cgroup cpu controller"):
        cpu_cgroup_root(f"cgroup2 {tmp_path} cgroup2 rw 0 0\nproc /proc proc rw 0 0\n")


def test_a_budget_outside_the_machine_is_refused_before_any_cgroup_is_made(tmp_path):
    with pytest.raises(CpuBudgetError, match="outside"):
        CpuBudget(0.0, root=tmp_path, version=2)
    assert list(tmp_path.iterdir()) == []


def test_a_group_its_quota_and_its_removal_on_a_v2_tree(tmp_path):
    # A plain folder stands in for the cgroup2 mount: the files written are what the kernel
    # reads; the kernel's own side (throttling) is what benchmarks/round.py measures.
    with CpuBudget(0.25, root=tmp_path, version=2) as budget:
        entry = budget.entry(3)
        assert entry == budget.parent / "vehicle-3" / "cgroup.procs"
        assert (budget.parent / "vehicle-3" / "cpu.max").read_text() == "25000 100000"
        assert (budget.parent / "cgroup.subtree_control").read_text() == "+cpu"
        (budget.parent / "vehicle-3" / "cpu.max").unlink()  # a kernel removes these itself
        (budget.parent / "cgroup.subtree_control").unlink()
    assert not (tmp_path / budget.parent.name / "vehicle-3").exists()
