#!/usr/bin/env python3
"""What a process of the sensor children's uid tries, to pose as the uplink
(tests/attacks.rs). One JSON line per event.

  impostor.py listen PATH   listen on PATH (replacing what is there) and
                            report every connection made to it
  impostor.py grab PID      pidfd_getfd of PID's descriptors 3 to 63: report
                            the first errno (EPERM: not dumpable) or success
"""
import ctypes
import errno
import json
import os
import socket
import sys

SYS_PIDFD_GETFD = 438


def emit(**kv):
    print(json.dumps(kv), flush=True)


def listen(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(16)
    emit(event="listening", path=path)
    while True:
        conn, _ = s.accept()
        emit(event="connection")
        conn.close()


def grab(pid):
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    for fd in range(3, 64):
        got = libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
        if got >= 0:
            emit(errno=None, fd=fd)
            return
        e = ctypes.get_errno()
        if e != errno.EBADF:
            emit(errno=errno.errorcode.get(e, str(e)), fd=fd)
            return
    emit(errno="EBADF", fd=None)


if __name__ == "__main__":
    if sys.argv[1] == "listen":
        listen(sys.argv[2])
    elif sys.argv[1] == "grab":
        grab(int(sys.argv[2]))
    else:
        sys.exit(__doc__)
