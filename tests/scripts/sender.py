"""Test sender: sends TCP_BYTES over TCP to each of TCP_HOSTS (comma-separated), then
UDP_COUNT datagrams of UDP_SIZE bytes to each of UDP_HOSTS, and prints for each TCP
connection what the kernel says it put on the wire, as MSS:BYTES_SENT:SEGS_OUT:
BYTES_RETRANS:SEGS_RETRANS (tcp_info, once every byte was acknowledged): payload bytes
and segments including retransmissions, so the test knows the IP bytes to expect
even when a stalled CPU made TCP retransmit."""
import socket
import struct
import sys
import time

# struct tcp_info (include/uapi/linux/tcp.h): offsets of tcpi_total_retrans (u32),
# tcpi_segs_out (u32), tcpi_bytes_sent and tcpi_bytes_retrans (u64; Linux 4.19+).
TCP_INFO_LEN = 216


def wire(tcp):
    info = tcp.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_LEN)
    (segs_retrans,) = struct.unpack_from("=I", info, 100)
    (segs_out,) = struct.unpack_from("=I", info, 136)
    bytes_sent, bytes_retrans = struct.unpack_from("=QQ", info, 200)
    return bytes_sent, segs_out, bytes_retrans, segs_retrans

tcp_hosts, port, tcp_bytes, udp_count, udp_size = (
    sys.argv[1].split(","), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]),
    int(sys.argv[5]))
udp_hosts = sys.argv[6:]

connections = []
chunk = b"x" * (1 << 20)
for host in tcp_hosts:
    tcp = socket.create_connection((host, port), timeout=10)
    mss = tcp.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
    left = tcp_bytes
    while left:
        n = min(left, len(chunk))
        tcp.sendall(chunk[:n])
        left -= n
    tcp.shutdown(socket.SHUT_WR)
    tcp.recv(1)  # the receiver closes after reading everything
    connections.append(":".join(map(str, (mss, *wire(tcp)))))
    tcp.close()

payload = b"u" * udp_size
for host in udp_hosts:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    udp = socket.socket(family, socket.SOCK_DGRAM)
    for i in range(udp_count):
        udp.sendto(payload, (host, port))
        if i % 50 == 49:
            time.sleep(0.002)  # stay below the veth backlog: no drops
    udp.close()
print(" ".join(connections))
