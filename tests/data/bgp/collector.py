#!/usr/bin/env python3
"""A passive BGP peer for capture.sh: accepts one session, advertises many
capabilities, asks for route refreshes, and writes every octet the other
speaker sent to OUT (raw messages, exactly as on the wire). It also writes
OUT.args: the `tortie bgp decode` flags that the negotiated capabilities call
for (4-octet AS, ADD-PATH families, extended message).

Usage: collector.py LISTEN_ADDR OUT [--refresh-after SECONDS] [--timeout SECONDS]
"""
import select
import socket
import struct
import sys
import time

MY_AS = 65000
MY_ID = bytes([192, 0, 2, 2])


def message(msg_type, body):
    return b"\xff" * 16 + struct.pack("!HB", 19 + len(body), msg_type) + body


def capability(code, value=b""):
    return bytes([code, len(value)]) + value


def our_open():
    caps = b"".join([
        capability(1, struct.pack("!HBB", 1, 0, 1)),
        capability(1, struct.pack("!HBB", 2, 0, 1)),
        capability(2),
        capability(70),
        capability(65, struct.pack("!I", MY_AS)),
        capability(64, struct.pack("!H", 120) + struct.pack("!HBB", 1, 1, 0x80) + struct.pack("!HBB", 2, 1, 0x80)),
        capability(69, struct.pack("!HBB", 1, 1, 3) + struct.pack("!HBB", 2, 1, 3)),
        capability(5, struct.pack("!HHH", 1, 1, 2)),
        capability(6),
    ])
    params = bytes([2, len(caps)]) + caps
    body = struct.pack("!BHH4sB", 4, MY_AS, 90, MY_ID, len(params)) + params
    return message(1, body)


def parse_caps(open_body):
    """The capabilities of an OPEN body as (code, value) pairs."""
    caps = []
    plen = open_body[9]
    params = open_body[10:10 + plen]
    i = 0
    while i + 2 <= len(params):
        ptype, length = params[i], params[i + 1]
        value = params[i + 2:i + 2 + length]
        i += 2 + length
        if ptype != 2:
            continue
        j = 0
        while j + 2 <= len(value):
            code, clen = value[j], value[j + 1]
            caps.append((code, value[j + 2:j + 2 + clen]))
            j += 2 + clen
    return caps


def decode_args(caps):
    codes = {code for code, _ in caps}
    args = []
    if 65 not in codes:
        args.append("--no-as4")
    families = []
    for code, value in caps:
        if code != 69:
            continue
        for k in range(0, len(value) - 3, 4):
            afi, safi, send_receive = struct.unpack("!HBB", value[k:k + 4])
            # The peer sends path identifiers when it can send and we receive.
            if send_receive & 2 and safi == 1 and afi in (1, 2):
                families.append("ipv4-unicast" if afi == 1 else "ipv6-unicast")
    if families:
        args.append("--add-path " + ",".join(sorted(set(families))))
    if 6 in codes:
        args.append("--extended-message")
    return " ".join(args)


def main():
    listen, out = sys.argv[1], sys.argv[2]
    refresh_after = 6.0
    timeout = 40.0
    if "--refresh-after" in sys.argv:
        refresh_after = float(sys.argv[sys.argv.index("--refresh-after") + 1])
    if "--timeout" in sys.argv:
        timeout = float(sys.argv[sys.argv.index("--timeout") + 1])
    family = socket.AF_INET6 if ":" in listen else socket.AF_INET
    server = socket.socket(family, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((listen, 179))
    server.listen(1)
    server.settimeout(timeout)
    conn, _ = server.accept()
    start = time.monotonic()
    received = bytearray()
    conn.sendall(our_open())
    sent_keepalive = False
    refreshed = False
    last_keepalive = time.monotonic()
    peer_caps = None
    while time.monotonic() - start < timeout:
        ready, _, _ = select.select([conn], [], [], 0.5)
        if ready:
            data = conn.recv(65536)
            if not data:
                break
            received += data
        if peer_caps is None and len(received) >= 19 and received[18] == 1:
            length = struct.unpack("!H", received[16:18])[0]
            if len(received) >= length:
                peer_caps = parse_caps(bytes(received[19:length]))
        if peer_caps is not None and not sent_keepalive:
            conn.sendall(message(4, b""))
            sent_keepalive = True
        if sent_keepalive and time.monotonic() - last_keepalive > 10:
            conn.sendall(message(4, b""))
            last_keepalive = time.monotonic()
        if sent_keepalive and not refreshed and time.monotonic() - start > refresh_after:
            codes = {code for code, _ in peer_caps}
            if 2 in codes or 128 in codes:
                conn.sendall(message(5, struct.pack("!HBB", 1, 0, 1)))
                conn.sendall(message(5, struct.pack("!HBB", 2, 0, 1)))
            refreshed = True
    conn.close()
    with open(out, "wb") as f:
        f.write(received)
    with open(out + ".args", "w") as f:
        f.write(decode_args(peer_caps or []) + "\n")
    print(f"collector: {len(received)} octets to {out}; decode flags: {decode_args(peer_caps or [])}")


if __name__ == "__main__":
    main()
