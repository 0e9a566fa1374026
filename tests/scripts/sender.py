"""Test sender: sends TCP_BYTES over TCP to TCP_HOST, then UDP_COUNT datagrams of
UDP_SIZE bytes to each of UDP_HOSTS, and prints the TCP MSS it used (to compute
the header bytes the IP layer adds)."""
import socket
import sys
import time

tcp_host, port, tcp_bytes, udp_count, udp_size = (
    sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
udp_hosts = sys.argv[6:]

deadline = time.monotonic() + 10
while True:
    try:
        tcp = socket.create_connection((tcp_host, port), timeout=10)
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.05)
mss = tcp.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
chunk = b"x" * (1 << 20)
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
print(mss)
