#!/usr/bin/env python3
"""TCP endpoints for the response-action tests. Each prints one JSON line
per event, with CLOCK_REALTIME time, and flushes it at once.

  tcpends.py server ADDR PORT [PORT...]  echo server; logs how each connection ended
  tcpends.py busy HOST PORT NAME         a message every 50 ms, reads each echo, until it fails
  tcpends.py idle HOST PORT NAME         one echo, then silence until the connection ends
  tcpends.py probe HOST PORT             one new connection: three echoes 50 ms apart;
                                         exit 0 if all came back, 1 otherwise
  tcpends.py bare-acks SRC DST DPORT N   N bare ACK segments from SRC (random ports and
                                         numbers, no socket behind them) to DST:DPORT,
                                         through a raw socket (root)
"""
import errno
import json
import random
import socket
import struct
import sys
import threading
import time


# One lock for stdout: the server's threads print concurrently, and
# print() writes the line and its newline apart, so two events could share
# a line (the reader would then lose both).
EMIT_LOCK = threading.Lock()


def emit(**kv):
    kv["t"] = time.time()
    line = json.dumps(kv) + "\n"
    with EMIT_LOCK:
        sys.stdout.write(line)
        sys.stdout.flush()


def how(e):
    if isinstance(e, OSError) and e.errno is not None:
        return errno.errorcode.get(e.errno, str(e.errno))
    return type(e).__name__


def serve_one(conn, peer):
    try:
        while True:
            data = conn.recv(4096)
            if not data:
                emit(event="server_ended", peer_port=peer[1], how="EOF")
                return
            conn.sendall(data)
    except OSError as e:
        emit(event="server_ended", peer_port=peer[1], how=how(e))
    finally:
        conn.close()


def server(addr, ports):
    for port in ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, int(port)))
        s.listen(64)

        def accept(s=s):
            while True:
                conn, peer = s.accept()
                emit(event="server_accepted", peer_port=peer[1], port=s.getsockname()[1])
                threading.Thread(target=serve_one, args=(conn, peer), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()
    emit(event="listening")
    while True:
        time.sleep(3600)


def client(host, port, name, busy):
    s = socket.create_connection((host, int(port)), timeout=5)
    s.settimeout(None)
    emit(event="connected", name=name, local_port=s.getsockname()[1])
    try:
        n = 0
        while True:
            msg = b"%s %d\n" % (name.encode(), n)
            s.sendall(msg)
            got = b""
            while len(got) < len(msg):
                part = s.recv(len(msg) - len(got))
                if not part:
                    raise EOFError()
                got += part
            n += 1
            if n == 1:
                emit(event="echoed", name=name)
            if busy:
                time.sleep(0.05)
            else:
                part = s.recv(1)  # silence until the end
                raise EOFError() if not part else RuntimeError("unexpected data")
    except (OSError, EOFError, RuntimeError) as e:
        emit(event="ended", name=name, how="EOF" if isinstance(e, EOFError) else how(e), messages=n)


def probe(host, port):
    try:
        s = socket.create_connection((host, int(port)), timeout=2)
        for i in range(3):
            s.sendall(b"probe %d\n" % i)
            if not s.recv(64):
                raise EOFError()
            time.sleep(0.05)
        emit(event="probe", ok=True)
        return 0
    except (OSError, EOFError) as e:
        emit(event="probe", ok=False, how="EOF" if isinstance(e, EOFError) else how(e))
        return 1


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def bare_acks(src, dst, dport, count):
    """Segments a spoofer (or a host with no such connection) sends: the
    kernel adds the IP header; the TCP header and its checksum are ours."""
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    for _ in range(int(count)):
        sport = random.randint(20000, 60000)
        seq, ack = random.getrandbits(32), random.getrandbits(32)
        header = struct.pack("!HHIIBBHHH", sport, int(dport), seq, ack, 5 << 4, 0x10, 65535, 0, 0)
        pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(header))
        header = header[:16] + struct.pack("!H", checksum(pseudo + header)) + header[18:]
        s.sendto(header, (dst, 0))
        emit(event="bare_ack", sport=sport, dport=int(dport))
        time.sleep(0.02)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "server":
        server(sys.argv[2], sys.argv[3:])
    elif mode in ("busy", "idle"):
        client(sys.argv[2], sys.argv[3], sys.argv[4], mode == "busy")
    elif mode == "probe":
        sys.exit(probe(sys.argv[2], sys.argv[3]))
    elif mode == "bare-acks":
        bare_acks(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
    else:
        sys.exit(__doc__)
