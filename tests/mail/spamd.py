"""A real SpamAssassin spamd on a free loopback port for the spam tests (Debian packages
`spamassassin` and `spamc`).

Quick and offline: `--local` (no network tests), `-L`, no Bayes, no auto-learn, no user
preferences; its own site config (Debian's .pre files, which load the plugins, plus a
local.cf) in a temporary directory. Started once per test session (about 7 s) and ended with
it; a missing spamd skips the tests that need it.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import HOST, free_port

SPAMD = shutil.which("spamd") or "/usr/sbin/spamd"
_SITE_PRE = Path("/etc/spamassassin")
_LOCAL_CF = """\
use_bayes 0
bayes_auto_learn 0
skip_rbl_checks 1
dns_available no
"""
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def _pings(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1) as conn:
            conn.sendall(b"PING SPAMC/1.5\r\n\r\n")
            return b"PONG" in conn.recv(100)
    except OSError:
        return False


@contextlib.contextmanager
def running_spamd() -> Iterator[int]:
    """spamd listening on the yielded port until the block ends."""
    if not Path(SPAMD).exists():
        pytest.skip("spamd is not installed (apt-get install spamassassin spamc)")
    with tempfile.TemporaryDirectory(prefix="leadbot-spamd-") as tmp:
        Path(tmp).chmod(0o755)  # spamd reads its config as nobody
        site = Path(tmp) / "site"
        site.mkdir(mode=0o755)
        for pre in _SITE_PRE.glob("*.pre"):
            shutil.copy(pre, site)
        (site / "local.cf").write_text(_LOCAL_CF)
        port = free_port()
        log = (Path(tmp) / "spamd.log").open("wb")
        command = [SPAMD, "--local", "-L", "-x", "-i", HOST, "-A", HOST, "-p", str(port)]
        command += ["-m", "2", "--min-spare=1", "--max-spare=2", "-s", "stderr", "-u", "nobody"]
        command += [f"--siteconfigpath={site}"]
        proc = subprocess.Popen(command, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 60
            while not _pings(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    text = (Path(tmp) / "spamd.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"spamd did not start:\n{text}")
                time.sleep(0.1)
            yield port
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(20)
            log.close()
