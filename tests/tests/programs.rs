//! Every eBPF program the loader's table (`exporter/src/bpf/programs.rs` PROGRAMS)
//! expects on the running kernel is attached, as kadvisor reports it in
//! `kadvisor_bpf_program_attached`. Run on the host and on each kernel of the matrix
//! (scripts/kernel-matrix.sh), this turns a verifier rejection of an optional program,
//! which kadvisor itself survives by leaving the family out, into a test failure.
use kadvisor::bpf::{KernelVersion, PROGRAMS};
use kadvisor_tests::kadvisor::Kadvisor;

const ATTACHED: &str = "kadvisor_bpf_program_attached";

#[test]
fn every_program_expected_on_this_kernel_is_attached() {
    let kernel = KernelVersion::running().expect("parse /proc/sys/kernel/osrelease");
    let kadvisor = Kadvisor::start(&[]);
    let scrape = kadvisor.scrape();
    let mut missing = Vec::new();
    for spec in PROGRAMS {
        let attached = scrape.value(ATTACHED, &[("program", spec.name), ("family", spec.family)]);
        match (spec.expected_on(kernel), spec.min_kernel) {
            (true, _) if attached != 1.0 => missing.push(format!(
                "{} (family {}, hook {}) did not attach on {kernel}",
                spec.name, spec.family, spec.hook
            )),
            (false, Some(min)) => eprintln!(
                "{} not expected on {kernel}: hook added in {} ({}); attached={attached}",
                spec.name, min.version, min.source
            ),
            _ => {}
        }
    }
    assert!(
        missing.is_empty(),
        "programs the table expects on kernel {kernel} are not attached (see kadvisor's \
         warnings above for the verifier's reason):\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn every_program_of_the_table_has_a_row() {
    let kadvisor = Kadvisor::start(&[]);
    let scrape = kadvisor.scrape();
    assert_eq!(
        scrape.find(ATTACHED, &[]).len(),
        PROGRAMS.len(),
        "one {ATTACHED} row per program of the table"
    );
}
