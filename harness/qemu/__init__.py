"""Everything that talks to QEMU: finding the binaries, building the command line, QMP."""
