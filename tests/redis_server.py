"""A real ``redis-server`` for the tests that share state through Redis.

``.ci/run`` installs Debian's package; each server runs on its own free port
with persistence off, in a temporary directory. The session's shared server
(``redis_url``) is flushed before every test that uses it; a test that stops
and restarts Redis (an outage) asks ``redis_factory`` for a server of its own.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    def __init__(self, port: int | None = None, password: str | None = None) -> None:
        self.port = port or _free_port()
        self.password = password  # requirepass: the URL carries it, command() sends AUTH
        self.dir = Path(tempfile.mkdtemp(prefix="llmproxy-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed; .ci/run installs it (apt-get install redis-server)")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir), "--protected-mode", "no", "--loglevel", "warning",
             *(["--requirepass", self.password] if self.password else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while self.command("PING") != b"+PONG":
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process = None

    def command(self, *args: str) -> bytes | None:
        """One RESP command over a plain socket; the first reply line, or None
        when nothing listens."""
        def wire(*words: str) -> str:
            return f"*{len(words)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in words)

        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                replies = s.makefile("rb")
                if self.password:
                    s.sendall(wire("AUTH", self.password).encode())
                    replies.readline()
                s.sendall(wire(*args).encode())
                return replies.readline().rstrip(b"\r\n")
        except OSError:
            return None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
