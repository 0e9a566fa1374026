//! Socket traffic per cgroup: `cgroup_skb` ingress and egress programs attached at the
//! cgroup v2 root, so they see every packet of every socket on the host, whatever its
//! network namespace. Each packet is charged to the cgroup of its socket
//! (`bpf_skb_cgroup_id`: the cgroup the socket was created in), which separates
//! containers that share a pod network namespace or the host's (hostNetwork).
//!
//! What is counted: IP packets as on the wire. In a `cgroup_skb` program `skb->len`
//! starts at the IP header (the kernel pushes the network header back before running
//! the program), so link-layer headers are not included. A GSO (egress) or GRO
//! (ingress) aggregate is one skb for many segments; it is counted as the
//! `gso_segs` packets it stands for, each with its own IP and TCP/UDP header.
//!
//! Transmitted traffic is split by destination class: the destination address is
//! looked up in `DESTINATIONS`, an LPM trie the daemon fills from `--pod_cidr`,
//! `--service_cidr` and `--node_cidr`; no match is `DEST_EXTERNAL`.
//!
//! The programs always return 1 (allow): they observe, never filter.
//!
//! # Minimum kernel version
//! `cgroup_skb` needs 4.10, `bpf_skb_cgroup_id` 4.18, `__sk_buff.gso_segs` 5.1,
//! link-based attach (which never displaces other programs) 5.7.
use aya_ebpf::{
    helpers::bpf_skb_cgroup_id,
    macros::{cgroup_skb, map},
    maps::lpm_trie::{Key, LpmTrie},
    programs::SkBuffContext,
};
use kadvisor_common::{
    DEST_CLASS_COUNT, DEST_EXTERNAL, DestinationAddr, KernelError, MAX_DESTINATION_CIDRS,
};

use crate::maps::{CGROUP_NET, count_error, excluded, per_cpu_entry};

/// Configured CIDRs → destination class (`DEST_*`). IPv4 as IPv4-mapped IPv6.
#[map(name = "DESTINATIONS")]
static DESTINATIONS: LpmTrie<DestinationAddr, u32> =
    LpmTrie::with_max_entries(MAX_DESTINATION_CIDRS, 0);

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const UDP_HEADER_LEN: u32 = 8;
const IPV6_HEADER_LEN: u32 = 40;

/// Verdict of a `cgroup_skb` program that lets the packet pass.
const ALLOW: i32 = 1;

#[cgroup_skb(ingress)]
pub fn socket_ingress(ctx: SkBuffContext) -> i32 {
    count(&ctx, false);
    ALLOW
}

#[cgroup_skb(egress)]
pub fn socket_egress(ctx: SkBuffContext) -> i32 {
    count(&ctx, true);
    ALLOW
}

/// The IP header fields we need.
struct Ip {
    /// IP header length.
    header_len: u32,
    /// Transport protocol (`protocol` / `next header`).
    protocol: u8,
    /// Destination address, IPv4 mapped into IPv6.
    daddr: DestinationAddr,
}

#[inline(always)]
fn count(ctx: &SkBuffContext, egress: bool) {
    let skb = ctx.skb.skb;
    // SAFETY: the context pointer the kernel passed; these __sk_buff fields are
    // readable by cgroup_skb programs (the verifier rewrites the loads).
    let (len, gso_segs) = unsafe { ((*skb).len, (*skb).gso_segs) };
    // SAFETY: the skb the kernel passed.
    let cgroup_id = unsafe { bpf_skb_cgroup_id(skb) };
    if excluded(cgroup_id) {
        return;
    }
    let segments = if gso_segs > 1 { gso_segs } else { 1 };

    let ip = if egress || segments > 1 {
        let ip = read_ip(ctx);
        if ip.is_none() {
            count_error(KernelError::PacketRead);
        }
        ip
    } else {
        None
    };
    let mut bytes = u64::from(len);
    if segments > 1
        && let Some(ip) = &ip
    {
        // Every segment but the first carries its own copy of the headers.
        let headers = ip.header_len + transport_header_len(ctx, ip);
        bytes += u64::from(segments - 1) * u64::from(headers);
    }
    let packets = u64::from(segments);

    let Some(entry) = per_cpu_entry(&CGROUP_NET, cgroup_id) else {
        return;
    };
    if egress {
        let class = ip.map_or(DEST_EXTERNAL, |ip| destination_class(&ip.daddr));
        let class = (class as usize).min(DEST_CLASS_COUNT - 1);
        // SAFETY: `entry` is this CPU's live value slot; the index is bounded above.
        unsafe {
            if let Some(b) = (*entry).tx_bytes.get_mut(class) {
                add(b, bytes);
            }
            if let Some(p) = (*entry).tx_packets.get_mut(class) {
                add(p, packets);
            }
        }
    } else {
        // SAFETY: as above.
        unsafe {
            add(&raw mut (*entry).rx_bytes, bytes);
            add(&raw mut (*entry).rx_packets, packets);
        }
    }
}

/// `*counter += value` on this CPU's slot. cgroup_skb programs run with migration
/// disabled, not preemption: on a fully preemptible kernel another task's egress on
/// the same CPU could interleave and one update be lost. The BPF target offers no
/// atomic read-modify-write in stable Rust (`AtomicU64::fetch_add` is missing on
/// bpfel), so this stays a plain add: a rare, small undercount on PREEMPT kernels.
#[inline(always)]
fn add(counter: *mut u64, value: u64) {
    // SAFETY: callers pass a valid, aligned pointer into a map value.
    unsafe { *counter += value };
}

#[inline(always)]
fn read_ip(ctx: &SkBuffContext) -> Option<Ip> {
    let first: u8 = ctx.load(0).ok()?;
    match first >> 4 {
        4 => {
            let header: [u8; 20] = ctx.load(0).ok()?;
            let mut daddr = [0u8; 16];
            daddr[10] = 0xff;
            daddr[11] = 0xff;
            daddr[12..16].copy_from_slice(&header[16..20]);
            Some(Ip {
                header_len: u32::from(header[0] & 0x0f) * 4,
                protocol: header[9],
                daddr,
            })
        }
        6 => {
            let header: [u8; 40] = ctx.load(0).ok()?;
            let mut daddr = [0u8; 16];
            daddr.copy_from_slice(&header[24..40]);
            Some(Ip {
                header_len: IPV6_HEADER_LEN,
                protocol: header[6],
                daddr,
            })
        }
        _ => None,
    }
}

/// TCP header length (data offset) or UDP's 8; 0 for anything else (IPv6 extension
/// headers are not followed: such aggregates are counted with the IP header only).
#[inline(always)]
fn transport_header_len(ctx: &SkBuffContext, ip: &Ip) -> u32 {
    match ip.protocol {
        IPPROTO_TCP => {
            // Bounded so the verifier sees a small offset.
            let offset = (ip.header_len & 0x3c) as usize + 12;
            match ctx.load::<u8>(offset) {
                Ok(data_offset) => u32::from(data_offset >> 4) * 4,
                Err(_) => {
                    count_error(KernelError::PacketRead);
                    0
                }
            }
        }
        IPPROTO_UDP => UDP_HEADER_LEN,
        _ => 0,
    }
}

#[inline(always)]
fn destination_class(daddr: &DestinationAddr) -> u32 {
    let key = Key::new(128, *daddr);
    DESTINATIONS.get(&key).copied().unwrap_or(DEST_EXTERNAL)
}
