//! Two network namespaces joined by a veth pair, made (and removed) by one test.
//! Traffic never leaves them: the addresses are documentation ranges
//! (192.0.2.0/24, 198.51.100.0/24, RFC 5737) and unique-local IPv6 (fd00::/8), on
//! the veth only, with no route anywhere else.
use std::process::Command;

/// Namespaces `a` and `b`, veth `a_if` (in `a`) ↔ `b_if` (in `b`).
/// Each side has one address in each of the three ranges: `A_ADDRS` / `B_ADDRS`.
pub struct NetnsPair {
    pub a: String,
    pub b: String,
    pub a_if: String,
    pub b_if: String,
}

/// Addresses of side a and side b: (IPv4 net 1, IPv4 net 2, IPv6).
pub const A_ADDRS: [&str; 3] = ["192.0.2.1/24", "198.51.100.1/24", "fd00:6b61::1/64"];
pub const B_ADDRS: [&str; 3] = ["192.0.2.2/24", "198.51.100.2/24", "fd00:6b61::2/64"];

fn ip(args: &[&str]) {
    let status = Command::new("ip")
        .args(args)
        .status()
        .expect("run ip (iproute2)");
    assert!(status.success(), "ip {} failed", args.join(" "));
}

impl NetnsPair {
    pub fn new(tag: &str) -> Self {
        crate::require_root();
        let pid = std::process::id();
        let pair = Self {
            a: format!("kadvisor-test-{pid}-{tag}-a"),
            b: format!("kadvisor-test-{pid}-{tag}-b"),
            // Interface names: at most 15 bytes, and not veth* (cAdvisor skips those).
            a_if: format!("kt{pid}a"),
            b_if: format!("kt{pid}b"),
        };
        ip(&["netns", "add", &pair.a]);
        ip(&["netns", "add", &pair.b]);
        ip(&[
            "link", "add", &pair.a_if, "netns", &pair.a, "type", "veth", "peer", "name",
            &pair.b_if, "netns", &pair.b,
        ]);
        for (ns, dev, addrs) in [
            (&pair.a, &pair.a_if, A_ADDRS),
            (&pair.b, &pair.b_if, B_ADDRS),
        ] {
            for addr in addrs {
                let mut args = vec!["-n", ns.as_str(), "addr", "add", addr, "dev", dev.as_str()];
                if addr.contains(':') {
                    args.push("nodad");
                }
                ip(&args);
            }
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        pair
    }

    /// `argv` run in namespace `ns` through `ip netns exec` (which execs, keeping
    /// the PID).
    pub fn command(ns: &str, argv: &[&str]) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", ns]).args(argv);
        command
    }
}

/// `/proc/<pid>/net/dev` counters of `interface`: (rx bytes, rx packets, tx bytes, tx packets).
pub fn net_dev(pid: u32, interface: &str) -> [f64; 4] {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).expect("read net/dev");
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{interface}:")))
        .unwrap_or_else(|| panic!("{interface} not in /proc/{pid}/net/dev:\n{text}"));
    let v: Vec<f64> = line
        .split_once(':')
        .unwrap()
        .1
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    [v[0], v[1], v[8], v[9]]
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        // Deleting a namespace destroys its end of the veth, and with it the pair.
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
