//! Network: per-container socket counters from the cgroup_skb programs, their
//! destination classes, and the cAdvisor-compatible interface rows, on real traffic
//! between two network namespaces joined by a veth pair.
//!
//! Layer counted by `container_socket_*`: IP packets, IP header included, link-layer
//! header not; GSO/GRO aggregates as the segments they stand for.
use std::{path::PathBuf, process::Command, time::Duration};

use kadvisor_tests::{
    assert_close,
    cgroup::TestCgroup,
    kadvisor::{ALL_GROUPS, Kadvisor},
    netns::{NetnsPair, net_dev},
    scrape::Scrape,
};

const TCP_BYTES: u64 = 8 << 20;
const UDP_COUNT: u64 = 2000;
const UDP_SIZE: u64 = 1000;
const PORT: &str = "5201";
/// Interface MTU of the veth pair (the kernel default).
const MTU: u64 = 1500;
const IPV4_UDP_HEADERS: u64 = 20 + 8;
const IPV6_UDP_HEADERS: u64 = 40 + 8;

fn script(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
        .display()
        .to_string()
}

fn socket(scrape: &Scrape, name: &str, cg: &TestCgroup, destination: Option<&str>) -> f64 {
    match destination {
        Some(d) => scrape.value(name, &[("id", cg.id()), ("destination", d)]),
        None => scrape
            .find(name, &[("id", cg.id())])
            .iter()
            .map(|s| s.value)
            .sum(),
    }
}

/// Waits until `pid`'s namespace has a TCP listener on `port`, so that the sender's
/// first SYN is answered (a refused retry would add RSTs to the counters).
fn wait_listening(pid: u32, port: &str) {
    let port_hex = format!(":{:04X} ", port.parse::<u16>().unwrap());
    for _ in 0..200 {
        let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp6")).unwrap_or_default();
        if table
            .lines()
            .any(|l| l.contains(&port_hex) && l.split_whitespace().nth(3) == Some("0A"))
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the receiver never listened on port {port}");
}

/// What the sender's kernel put on the wire for one TCP connection (`tcp_info`,
/// printed by tests/scripts/sender.py as `mss:bytes_sent:segs_out:bytes_retrans:segs_retrans`).
#[derive(Debug, Clone, Copy)]
struct TcpSent {
    /// Payload bytes of a full segment: the MTU less the IP and TCP headers.
    mss: u64,
    /// Payload bytes sent, retransmissions included.
    payload: u64,
    /// Segments sent (SYN, data, ACKs, FIN), retransmissions included.
    segments: u64,
    resent_payload: u64,
    resent_segments: u64,
}

impl TcpSent {
    fn parse(text: &str) -> Self {
        let fields: Vec<u64> = text
            .split(':')
            .map(|f| {
                f.parse()
                    .unwrap_or_else(|_| panic!("bad sender output {text:?}"))
            })
            .collect();
        let [mss, payload, segments, resent_payload, resent_segments] = fields[..] else {
            panic!("want five fields per connection, got {text:?}")
        };
        assert!(
            payload >= TCP_BYTES,
            "the sender's kernel sent {payload} payload bytes of {TCP_BYTES}"
        );
        Self {
            mss,
            payload,
            segments,
            resent_payload,
            resent_segments,
        }
    }

    /// IP bytes: the payload and each segment's IP and TCP headers (MTU - MSS).
    fn ip_bytes(self) -> u64 {
        self.payload + self.segments * (MTU - self.mss)
    }

    fn resent_ip_bytes(self) -> u64 {
        self.resent_payload + self.resent_segments * (MTU - self.mss)
    }
}

#[test]
fn veth_traffic_per_container_by_destination_and_per_namespace() {
    let kadvisor = Kadvisor::start(&[
        ALL_GROUPS[0],
        ALL_GROUPS[1],
        "--pod_cidr",
        "192.0.2.0/24",
        "--service_cidr",
        "203.0.113.0/24",
        "--node_cidr",
        "fd00::/8",
    ]);
    let net = NetnsPair::new("net");
    // Pod-like layout in namespace a: a "sandbox" whose process starts first, and an
    // app container joining the same namespace. The receiver is alone in b.
    let mut sandbox = TestCgroup::new("sandbox");
    let sandbox_pid = sandbox.spawn(&mut NetnsPair::command(&net.a, &["sleep", "600"]));
    std::thread::sleep(Duration::from_millis(50));
    let app = TestCgroup::new("app");
    let mut server = TestCgroup::new("server");
    let receiver = script("receiver.py");
    let server_pid = server.spawn(&mut NetnsPair::command(
        &net.b,
        &["python3", &receiver, PORT],
    ));

    wait_listening(server_pid, PORT);

    let sender = script("sender.py");
    let (tcp_bytes, udp_count, udp_size) = (
        TCP_BYTES.to_string(),
        UDP_COUNT.to_string(),
        UDP_SIZE.to_string(),
    );
    let output = app.output(&mut NetnsPair::command(
        &net.a,
        &[
            "python3",
            &sender,
            "192.0.2.2,fd00:6b61::2",
            PORT,
            &tcp_bytes,
            &udp_count,
            &udp_size,
            "198.51.100.2",
            "fd00:6b61::2",
        ],
    ));
    assert!(
        output.status.success(),
        "sender failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let connections: Vec<TcpSent> = stdout.split_whitespace().map(TcpSent::parse).collect();
    let [tcp4, tcp6] = connections[..] else {
        panic!("want two TCP connections from the sender, got {stdout:?}")
    };
    // Let the last ACKs and datagrams land.
    std::thread::sleep(Duration::from_millis(300));

    let scrape = kadvisor.scrape();
    let a_dev = net_dev(sandbox_pid, &net.a_if);
    let b_dev = net_dev(server_pid, &net.b_if);

    // Per container, by destination class: payload plus IP and transport headers, of
    // every segment the sender's kernel says it sent (retransmissions included).
    let (expected_tcp, expected_tcp6) = (tcp4.ip_bytes(), tcp6.ip_bytes());
    let expected_udp4 = UDP_COUNT * (UDP_SIZE + IPV4_UDP_HEADERS);
    let expected_udp6 = UDP_COUNT * (UDP_SIZE + IPV6_UDP_HEADERS);
    let tx = "container_socket_transmit_bytes_total";
    eprintln!(
        "sent {connections:?}; expected tcp {expected_tcp} tcp6 {expected_tcp6} udp4 {expected_udp4} udp6 {expected_udp6}; \
         scraped pod {} external {} node {} packets {}; veth a {a_dev:?} b {b_dev:?}",
        socket(&scrape, tx, &app, Some("pod")),
        socket(&scrape, tx, &app, Some("external")),
        socket(&scrape, tx, &app, Some("node")),
        socket(
            &scrape,
            "container_socket_transmit_packets_total",
            &app,
            None
        ),
    );
    assert_close(
        "TCP bytes to the pod CIDR",
        socket(&scrape, tx, &app, Some("pod")),
        expected_tcp as f64,
        0.02,
    );
    assert_close(
        "UDP bytes to an address outside every CIDR",
        socket(&scrape, tx, &app, Some("external")),
        expected_udp4 as f64,
        0.02,
    );
    assert_close(
        "TCP and UDP over IPv6 to the node CIDR",
        socket(&scrape, tx, &app, Some("node")),
        (expected_tcp6 + expected_udp6) as f64,
        0.02,
    );
    assert_eq!(
        socket(&scrape, tx, &app, Some("service")),
        0.0,
        "nothing was sent to the service CIDR"
    );
    let expected_packets = tcp4.segments + tcp6.segments + 2 * UDP_COUNT;
    assert_close(
        "packets sent by the app",
        socket(
            &scrape,
            "container_socket_transmit_packets_total",
            &app,
            None,
        ),
        expected_packets as f64,
        0.02,
    );

    // What a sent, b received; what b sent (ACKs), a received.
    let app_tx = socket(&scrape, tx, &app, None);
    let server_rx = socket(
        &scrape,
        "container_socket_receive_bytes_total",
        &server,
        None,
    );
    // Less by what the veth dropped, which TCP sent again: at most the retransmitted
    // segments (none on an idle machine; a stalled CPU can make TCP resend a window).
    let resent = (tcp4.resent_ip_bytes() + tcp6.resent_ip_bytes()) as f64;
    assert!(
        server_rx >= (app_tx - resent) * 0.98 && server_rx <= app_tx * 1.02,
        "bytes received by the server {server_rx} vs sent by the app {app_tx} (of which resent {resent})"
    );
    let server_tx = socket(&scrape, tx, &server, None);
    let app_rx = socket(&scrape, "container_socket_receive_bytes_total", &app, None);
    assert!(server_tx > 0.0, "the server sent ACKs");
    assert_close(
        "ACK bytes received by the app vs sent by the server",
        app_rx,
        server_tx,
        0.02,
    );
    assert_eq!(
        socket(&scrape, tx, &sandbox, None),
        0.0,
        "the sandbox's sleep sent nothing: per-container counters separate a shared namespace"
    );

    // Interface rows: one row per namespace (the sandbox, not the app), equal to the
    // veth's own counters.
    for (cg, interface, dev) in [(&sandbox, &net.a_if, a_dev), (&server, &net.b_if, b_dev)] {
        let labels = [("id", cg.id()), ("interface", interface.as_str())];
        for (i, name) in [
            "container_network_receive_bytes_total",
            "container_network_receive_packets_total",
            "container_network_transmit_bytes_total",
            "container_network_transmit_packets_total",
        ]
        .iter()
        .enumerate()
        {
            assert_close(
                &format!("{name} of {interface}"),
                scrape.value(name, &labels),
                dev[i],
                0.01,
            );
        }
    }
    assert!(
        a_dev[2] >= TCP_BYTES as f64,
        "the veth carried the payload: {a_dev:?}"
    );
    assert!(
        scrape
            .find("container_network_receive_bytes_total", &[("id", app.id())])
            .is_empty(),
        "the app shares the sandbox's namespace; its row must not repeat it"
    );
    assert!(
        !scrape
            .find("container_network_receive_bytes_total", &[("id", "/")])
            .is_empty(),
        "the root row has the host's interfaces"
    );
    for s in scrape.find("container_network_receive_bytes_total", &[("id", "/")]) {
        let interface = &s.labels["interface"];
        assert!(
            interface != &net.a_if && interface != &net.b_if && interface != "lo",
            "root row shows {interface}"
        );
    }
}

#[test]
fn bad_cidr_flags_fail_with_one_line() {
    for (flag, value, want) in [
        ("--pod_cidr", "10.0.0.1/8", "host bits"),
        ("--service_cidr", "10.96.0.0/40", "from 0 to 32"),
        ("--node_cidr", "nonsense", "not a CIDR"),
    ] {
        let out = kadvisor_tests::kadvisor::run_to_exit(&[flag, value]);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(want) && stderr.contains(flag), "{stderr}");
    }
}

#[test]
fn socket_programs_leave_other_cgroup_programs_alone() {
    // Two kadvisors attach at the same root: the second must not displace the first
    // (link-based / multi attach), both count the same traffic, and the second one
    // exiting (detaching its programs) leaves the first counting.
    let first = Kadvisor::start(&ALL_GROUPS);
    let second = Kadvisor::start(&ALL_GROUPS);
    let cg = TestCgroup::new("lo-traffic");
    let send_100 = || {
        let output = cg.output(Command::new("python3").args([
            "-c",
            "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nfor _ in range(100): s.sendto(b'x'*100,('127.0.0.1',9))",
        ]));
        assert!(output.status.success());
    };
    send_100();
    for k in [&first, &second] {
        let scrape = k.scrape();
        let sent = socket(
            &scrape,
            "container_socket_transmit_packets_total",
            &cg,
            None,
        );
        assert_eq!(sent, 100.0, "each kadvisor saw the 100 datagrams");
        assert_eq!(
            scrape.value(
                "kadvisor_bpf_program_attached",
                &[("program", "socket_egress")]
            ),
            1.0
        );
    }
    drop(second);
    send_100();
    let sent = socket(
        &first.scrape(),
        "container_socket_transmit_packets_total",
        &cg,
        None,
    );
    assert_eq!(
        sent, 200.0,
        "the first kadvisor still counts after the second exited"
    );
}
