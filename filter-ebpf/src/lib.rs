//! Empty on purpose. `filter-user` has a build-dependency on this package so that cargo
//! rebuilds it when the XDP program changes; that needs a host-buildable library target.
//! The program itself is the binary in `main.rs`, built for the BPF target by filter-user's
//! build script.
#![no_std]
