"""Make sure a Redis answers on 127.0.0.1:6379, starting one if needed (tests need it)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time

HOST, PORT = "127.0.0.1", 6379


def answers() -> bool:
    try:
        with socket.create_connection((HOST, PORT), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def main() -> int:
    if answers():
        return 0
    server = shutil.which("redis-server")
    if server is None and shutil.which("apt-get"):
        print("redis-server not found; installing it with apt-get", file=sys.stderr)
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", "redis-server"], check=False)
        server = shutil.which("redis-server")
    if server is None:
        print(
            "error: no Redis answers on 127.0.0.1:6379 and redis-server is not installed",
            file=sys.stderr,
        )
        return 1
    subprocess.run(
        [
            server,
            "--daemonize",
            "yes",
            "--bind",
            HOST,
            "--port",
            str(PORT),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        check=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if answers():
            print("started redis-server on 127.0.0.1:6379", file=sys.stderr)
            return 0
        time.sleep(0.1)
    print("error: started redis-server but it does not answer", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
