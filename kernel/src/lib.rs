//! Empty on purpose: a library target lets `exporter` list this crate as a
//! build-dependency, so cargo rebuilds the embedded eBPF object when it changes.
#![no_std]
