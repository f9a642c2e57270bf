"""Chromium's jail, probed from inside: a program in Chromium's place reports what it can read, write and do."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ossagent.tools.browser import Browser, BrowserConfig, UrlPolicy
from ossagent.tools.browser.chromium import default_executable
from ossagent.tools.browser.jail import _bwrap_works, chromium_sandbox_works, jail_uid, write_launcher

pytestmark = pytest.mark.skipif(not _bwrap_works(), reason="bubblewrap is not usable here")
ROOT = os.geteuid() == 0

PROBE = r'''#!/usr/bin/python3
import ctypes, json, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
out = {"uid": os.getuid(), "argv": sys.argv[1:]}
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
out["caps"] = {k: int(status[k].strip(), 16) for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}
out["no_new_privs"] = status["NoNewPrivs"].strip()
out["seccomp"] = status["Seccomp"].strip()
def readable(path):
    try:
        with open(path, "rb") as f:
            f.read(1)
        return True
    except OSError:
        return False
out["read"] = {p: readable(p) for p in sys.argv[2:] + ["/etc/shadow", "/etc/passwd", "/etc/hosts",
               "/root/.bashrc", "/etc/ssl/private"]}
out["environ"] = open("/proc/1/environ").read() + open("/proc/self/environ").read()
out["etc"] = sorted(os.listdir("/etc"))
writable = []
for line in open("/proc/self/mountinfo"):
    point = line.split()[4]
    if os.path.isdir(point):
        try:
            with open(os.path.join(point, ".probe-write"), "w") as f:
                f.write("x")
            writable.append(point)
        except OSError:
            pass
out["writable"] = sorted(set(writable))
def errno_of(fn):
    ctypes.set_errno(0)
    rc = fn()
    return 0 if rc == 0 else ctypes.get_errno()
out["mount_remount"] = errno_of(lambda: libc.mount(None, b"/usr", None, 32 | 4096, None))  # MS_REMOUNT|MS_BIND
out["setuid0"] = errno_of(lambda: libc.setuid(0))
out["ptrace"] = errno_of(lambda: libc.ptrace(16, 1, None, None))  # PTRACE_ATTACH to pid 1
# a new user namespace gives capabilities in it; mounting there must still be refused
out["unshare"] = errno_of(lambda: libc.unshare(0x10000000 | 0x00020000))  # NEWUSER | NEWNS
out["mount_in_userns"] = errno_of(lambda: libc.mount(b"none", b"/tmp", b"tmpfs", 0, None))
out["setns"] = errno_of(lambda: libc.setns(os.open("/proc/self/ns/net", os.O_RDONLY), 0))
socks = {}
for fam in ("AF_INET", "AF_INET6", "AF_NETLINK", "AF_PACKET"):
    try:
        socket.socket(getattr(socket, fam), socket.SOCK_DGRAM if fam != "AF_PACKET" else socket.SOCK_RAW).close()
        socks[fam] = "ok"
    except OSError as e:
        socks[fam] = e.errno
out["sockets"] = socks
out["ifaces"] = sorted(os.listdir("/sys/class/net")) if os.path.isdir("/sys/class/net") else []
print(json.dumps(out))
'''


@pytest.fixture()
def probe_dir() -> Iterator[Path]:
    """A folder the jail's uid can traverse (the probe is bound into the jail from here)."""
    with tempfile.TemporaryDirectory(prefix="ossagent-jail-test-") as d:
        os.chmod(d, 0o755)
        yield Path(d)


def _run_probe(folder: Path, own_sandbox: bool, secret: Path) -> dict[str, Any]:
    import subprocess

    probe = folder / "probe"
    probe.write_text(PROBE)
    probe.chmod(0o755)
    private = folder / "launcher"
    private.mkdir(mode=0o700)
    profile = Path(tempfile.mkdtemp(prefix="ossagent-jail-profile-"))
    uid = jail_uid()
    launcher = write_launcher(private, str(probe), uid=uid, own_sandbox=own_sandbox)
    try:
        proc = subprocess.run([str(launcher), f"--user-data-dir={profile}", str(secret)], capture_output=True,
                              timeout=30, env={"PATH": "/usr/bin:/bin", "SECRET_TOKEN": "host-secret"})
        written = profile / ".probe-write"  # who the probe is on the host: the owner of what it wrote
        owner = written.stat().st_uid if written.exists() else None
    finally:
        subprocess.run(["rm", "-rf", "--", str(profile)], check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    out: dict[str, Any] = json.loads(proc.stdout)
    out["profile"], out["host_uid"], out["owner"] = str(profile), uid, owner
    return out


@pytest.mark.parametrize("own_sandbox", [True, False], ids=["chromium-sandbox-on", "chromium-sandbox-off"])
def test_a_probe_in_chromiums_place_is_jailed(probe_dir: Path, own_sandbox: bool, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    secret.chmod(0o644)
    out = _run_probe(probe_dir, own_sandbox, secret)
    assert f"--user-data-dir={out['profile']}" in out["argv"]
    assert ("--no-sandbox" in out["argv"]) is not own_sandbox
    if ROOT:  # a dedicated host uid, never root
        assert out["owner"] == out["host_uid"] and out["host_uid"] >= 1000
    assert out["uid"] == 1000
    assert out["caps"] == {"CapInh": 0, "CapPrm": 0, "CapEff": 0, "CapBnd": 0, "CapAmb": 0}
    assert out["no_new_privs"] == "1" and out["seccomp"] == "2"
    assert not any(out["read"].values()), out["read"]
    assert "host-secret" not in out["environ"]
    assert out["etc"] == ["fonts", "ld.so.cache", "localtime"]
    assert out["writable"] == sorted([out["profile"], "/tmp", "/dev/shm"]), out["writable"]
    assert out["mount_remount"] != 0 and out["setuid0"] != 0 and out["ptrace"] != 0 and out["setns"] != 0
    assert out["mount_in_userns"] != 0, "a nested user namespace must not be able to mount"
    assert out["unshare"] == (0 if own_sandbox else 1)  # EPERM unless Chromium's sandbox needs namespaces
    assert out["sockets"] == {"AF_INET": 97, "AF_INET6": 97, "AF_NETLINK": 97, "AF_PACKET": 97}


@pytest.mark.skipif(default_executable() is None, reason="Chromium is not installed")
def test_chromium_runs_as_the_jail_uid_without_capabilities(site: Any, enc: Any) -> None:
    policy = UrlPolicy(allow_networks=("127.0.0.1/32",))
    with Browser(config=BrowserConfig(policy=policy, render="always"), encoding=enc) as b:
        assert "the magic number is 42" in b.open(site.base + "/js.html").text
        renderer = b.chromium()
        if renderer.sandbox != "bwrap":
            pytest.skip("Chromium's jail is used when the host runs as root")
        procs = []
        for d in Path("/proc").iterdir():
            try:
                cmdline = (d / "cmdline").read_bytes().split(b"\0") if d.name.isdigit() else []
                if renderer._marker.encode() in cmdline:
                    status = dict(line.split(":\t", 1) for line in (d / "status").read_text().splitlines()
                                  if ":\t" in line)
                    procs.append((status, cmdline))
            except OSError:
                continue
        browsers = [(st, cmd) for st, cmd in procs if st["Name"].startswith("chrom")]
        assert browsers, "no jailed Chromium found"
        own_sandbox = chromium_sandbox_works(renderer._state["jail_uid"])
        for status, cmdline in browsers:
            assert status["Uid"].split()[0] != "0" and int(status["CapEff"], 16) == 0, status
            assert status["Seccomp"].strip() == "2" and status["NoNewPrivs"].strip() == "1", status
            assert (b"--no-sandbox" in cmdline) is not own_sandbox
