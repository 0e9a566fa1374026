"""Test receiver: accepts TCP connections and UDP datagrams on one port (IPv4 and
IPv6), reads and discards everything until killed."""
import socket
import sys
import threading

port = int(sys.argv[1])
udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
udp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
udp.bind(("::", port))
tcp = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
tcp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind(("::", port))
tcp.listen(8)


def drain_udp():
    while True:
        udp.recv(65536)


threading.Thread(target=drain_udp, daemon=True).start()
while True:
    conn, _ = tcp.accept()
    while conn.recv(1 << 20):
        pass
    conn.close()
