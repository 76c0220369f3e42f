"""pinharness: boot kernels in QEMU, race long-term page pins against writeback."""

__version__ = "0.1.0"
