"""Kernel builds and bisection.

Takes a kernel tree and kernel-configs/ fragments; gives out O= builds (with Kconfig reasons for
options that did not stick), and drives git bisect over worktrees with a pin cell or a pytest
selection as the test of each step, giving the first bad (or fixing) commit.
"""
