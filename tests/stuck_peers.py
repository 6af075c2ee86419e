"""Never-reading WebSocket peers for the eviction tests.

Deno.connect cannot set socket options, and on loopback the kernel absorbs
megabytes per connection; with a 4 KiB receive buffer and an Ethernet-sized
segment the server's unsent data stays in the server process, where the
tests can see it.

usage: python3 stuck_peers.py PORT PATH COUNT [SUBPROTOCOL]

Opens COUNT connections to PATH, completes each handshake, prints "ready",
then obeys one command per stdin line and prints "done" after each:
  send TEXT   every peer sends TEXT as one masked text frame
  flood N B   every peer sends N text frames of B bytes
  close       every peer closes its TCP connection (no close frame)
  shutdown    every peer half-closes (FIN) and goes on not reading
EOF on stdin closes them all and exits.
"""

import base64
import os
import socket
import struct
import sys

RCVBUF = 4096
# The MSS this peer announces, and so the segment size the server sends it.
# Linux sizes a connection's send buffer from its segment size: at
# loopback's 64K the server's kernel took in megabytes per stuck peer, as
# if it were reading; at an Ethernet-sized segment it takes in tens of KB.
MSS = 1448


def handshake(port, path, protocol):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, MSS)
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if protocol:
        lines.append(f"Sec-WebSocket-Protocol: {protocol}")
    s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        b = s.recv(1)
        if not b:
            raise SystemExit("closed during handshake")
        head += b
    status = head.split(b" ")[1]
    if status != b"101":
        raise SystemExit(f"handshake answered {status.decode()}")
    return s


def text_frame(text):
    payload = text.encode()
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x81, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x81, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
    masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
    return head + mask + masked


def main():
    port, path, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    protocol = sys.argv[4] if len(sys.argv) > 4 else None
    peers = [handshake(port, path, protocol) for _ in range(count)]
    print("ready", flush=True)
    for line in sys.stdin:
        command, _, arg = line.rstrip("\n").partition(" ")
        if command == "send":
            frame = text_frame(arg)
            for s in peers:
                # Never blocks for long: the server reads whatever it is sent.
                s.sendall(frame)
        elif command == "flood":
            n, size = (int(x) for x in arg.split())
            frame = text_frame("f" * size)
            for s in peers:
                for _ in range(n):
                    s.sendall(frame)
        elif command == "shutdown":
            for s in peers:
                s.shutdown(socket.SHUT_WR)
        elif command == "close":
            for s in peers:
                s.close()
            peers = []
        print("done", flush=True)
    for s in peers:
        s.close()


main()
