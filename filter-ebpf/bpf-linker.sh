#!/bin/sh
# The linker of the BPF target (see .cargo/config.toml): bpf-linker with the CPU features
# floodwall's program is built for. rustc passes `--cpu` but no `--cpu-features`, and
# aya-build sets the child build's rustflags itself, so the features are added here.
#
# allows-misaligned-mem-access: let LLVM (22 and later) load a word from packet memory
# that is not known to be aligned, as one load instead of a byte at a time (a source
# address, 16 bytes, took 16 loads and 30 shifts and ors). The verifier accepts misaligned
# packet and map accesses on architectures with efficient unaligned access (x86-64,
# arm64); stack accesses stay aligned, as LLVM keeps its frame aligned.
exec bpf-linker --cpu-features=+allows-misaligned-mem-access "$@"
