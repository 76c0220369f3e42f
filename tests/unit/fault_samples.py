"""Synthetic inputs shared by the fault-injection trials (marker ``fault``)."""
from __future__ import annotations

from pathlib import Path


def built_tree(tmp_path: Path, makefile: str, release: str = "6.13.0") -> Path:
    """A kernel build directory with modules whose `make modules_install` is ``makefile``."""
    tree = tmp_path / "linux"
    (tree / "arch/x86/boot").mkdir(parents=True)
    bz = bytearray(0x4000)
    bz[0x202:0x206] = b"HdrS"
    (tree / "arch/x86/boot/bzImage").write_bytes(bytes(bz))
    (tree / ".config").write_text("CONFIG_MODULES=y\n")
    (tree / "modules.order").write_text("ext4.ko\n")
    (tree / "include/config").mkdir(parents=True)
    (tree / "include/config/kernel.release").write_text(release + "\n")
    (tree / "Makefile").write_text(makefile)
    return tree
