//! `container_crashes_total{signal}`: a program that segfaults three times yields 3
//! for its cgroup (and its parent) and 0 elsewhere; a handled SIGSEGV is not a crash.
use std::{
    os::unix::process::ExitStatusExt as _,
    process::{Command, Stdio},
};

use kadvisor_tests::{
    cgroup::TestCgroup,
    kadvisor::{ALL_GROUPS, Kadvisor},
    scrape::Scrape,
};

const CRASHES: &str = "container_crashes_total";

fn python(code: &str) -> Command {
    let mut command = Command::new("/usr/bin/python3");
    command
        .args(["-c", code])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

fn crashes(scrape: &Scrape, cg: &TestCgroup, signal: &str) -> f64 {
    scrape.value(CRASHES, &[("id", cg.id()), ("signal", signal)])
}

#[test]
fn three_segfaults_count_three_in_their_cgroup_only() {
    let kadvisor = Kadvisor::start(&ALL_GROUPS);
    let parent = TestCgroup::new("crashes");
    let mut crashing = parent.child("segv");
    let mut calm = parent.child("calm");
    let before = kadvisor.scrape();
    assert_eq!(crashes(&before, &crashing, "SIGSEGV"), 0.0);

    for _ in 0..3 {
        crashing.spawn(&mut python("import ctypes; ctypes.string_at(0)"));
        let status = crashing.wait_all();
        assert_eq!(status[0].signal(), Some(libc::SIGSEGV), "{status:?}");
    }
    // A SIGSEGV the program handles is not a crash.
    crashing.spawn(&mut python(
        "import os, signal; signal.signal(signal.SIGSEGV, lambda *a: None); os.kill(os.getpid(), signal.SIGSEGV)",
    ));
    assert!(crashing.wait_all()[0].success());
    calm.spawn(&mut python("pass"));
    assert!(calm.wait_all()[0].success());

    let after = kadvisor.scrape();
    assert_eq!(crashes(&after, &crashing, "SIGSEGV"), 3.0);
    for signal in ["SIGILL", "SIGABRT", "SIGBUS", "SIGFPE"] {
        assert_eq!(crashes(&after, &crashing, signal), 0.0, "{signal}");
    }
    assert_eq!(crashes(&after, &calm, "SIGSEGV"), 0.0);
    assert_eq!(
        crashes(&after, &parent, "SIGSEGV"),
        3.0,
        "parents include children"
    );
}

#[test]
fn abort_counts_as_sigabrt() {
    let kadvisor = Kadvisor::start(&ALL_GROUPS);
    let mut cg = TestCgroup::new("abort");
    cg.spawn(&mut python("import os; os.abort()"));
    assert_eq!(cg.wait_all()[0].signal(), Some(libc::SIGABRT));
    let scrape = kadvisor.scrape();
    assert_eq!(crashes(&scrape, &cg, "SIGABRT"), 1.0);
    assert_eq!(crashes(&scrape, &cg, "SIGSEGV"), 0.0);
}
