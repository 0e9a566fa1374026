"""Test sender: sends TCP_BYTES over TCP to each of TCP_HOSTS (comma-separated), then
UDP_COUNT datagrams of UDP_SIZE bytes to each of UDP_HOSTS, and prints the TCP MSS
of each connection (to compute the header bytes the IP layer adds)."""
import socket
import sys
import time

tcp_hosts, port, tcp_bytes, udp_count, udp_size = (
    sys.argv[1].split(","), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]),
    int(sys.argv[5]))
udp_hosts = sys.argv[6:]

mss = []
chunk = b"x" * (1 << 20)
for host in tcp_hosts:
    tcp = socket.create_connection((host, port), timeout=10)
    mss.append(tcp.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG))
    left = tcp_bytes
    while left:
        n = min(left, len(chunk))
        tcp.sendall(chunk[:n])
        left -= n
    tcp.shutdown(socket.SHUT_WR)
    tcp.recv(1)  # the receiver closes after reading everything
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
print(" ".join(map(str, mss)))
