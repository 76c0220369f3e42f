"""The guest: kernels, disk images, QEMU and the SSH/console link to a running VM.

Takes a kernel (a built tree, an image file or a Debian package) and the guest-images/ recipe;
gives out a booted ``VM`` that runs commands, with its console captured. The host layer
(``host``: cache paths, tools, disk space) lives here too, as the bottom of every stage.
"""
