//! Every eBPF program the loader's table (`exporter/src/bpf/programs.rs` PROGRAMS)
//! expects on the running kernel is attached, as kadvisor reports it in
//! `kadvisor_bpf_program_attached`. Run on the host and on each kernel of the matrix
//! (scripts/kernel-matrix.sh), this turns a verifier rejection of an optional program,
//! which kadvisor itself survives by leaving the family out, into a test failure.
use kadvisor::bpf::{KernelVersion, PROGRAMS};
use kadvisor_tests::kadvisor::{ALL_GROUPS, Kadvisor};

const ATTACHED: &str = "kadvisor_bpf_program_attached";

#[test]
fn every_program_expected_on_this_kernel_is_attached() {
    let kernel = KernelVersion::running().expect("parse /proc/sys/kernel/osrelease");
    // Every metric group on: the opt-in ones (socket, sched, ...) attach programs the
    // defaults leave out.
    let kadvisor = Kadvisor::start(&ALL_GROUPS);
    let scrape = kadvisor.scrape();
    let attached_value =
        |name: &str, family: &str| scrape.value(ATTACHED, &[("program", name), ("family", family)]);
    let mut missing = Vec::new();
    for spec in PROGRAMS {
        let attached = attached_value(spec.name, spec.family);
        // Alternatives for the same data (e.g. the OOM hooks): exactly one of a program
        // and the one it stands in for (`unless_attached`) must be attached.
        let partner = spec.unless_attached.or_else(|| {
            PROGRAMS
                .iter()
                .find(|other| other.unless_attached == Some(spec.name))
                .map(|other| other.name)
        });
        if let Some(partner) = partner {
            let partner_attached = attached_value(partner, spec.family);
            if spec.expected_on(kernel) && attached + partner_attached != 1.0 {
                missing.push(format!(
                    "exactly one of {} and {partner} (family {}) must attach on {kernel}: \
                     attached {attached} and {partner_attached}",
                    spec.name, spec.family
                ));
            }
            continue;
        }
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
