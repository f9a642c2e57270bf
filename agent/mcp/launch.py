"""The command line that starts a stdio MCP server: under bubblewrap unless the server is trusted.

Inside the sandbox the server sees a read-only ``/usr``, the Python installation, its own files (the command
and any argument that names an existing file) and ``read_only`` paths, and the workspace read-write at its
host path (so paths in arguments mean the same inside); ``/tmp`` is private, every namespace is new (no
network unless ``network``), all capabilities are dropped, and it dies with the agent. The environment is
the sandbox's, plus the server's own ``env``. Fails closed: no bubblewrap, no sandboxed server.
"""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

from ossagent.agent.mcp.config import MCPServerConfig
from ossagent.sandbox.launch import CLEAN_PATH, python_paths, sandbox_env
from ossagent.tools.base import UserError


def _exposed_paths(config: MCPServerConfig) -> list[Path]:
    """Host paths the server needs to read: its executable's folder and files named in its arguments."""
    paths: list[Path] = [*python_paths(), *(Path(p).resolve() for p in config.read_only)]
    exe = shutil.which(config.command[0])
    if exe and not Path(exe).resolve().is_relative_to("/usr"):
        paths.append(Path(exe).resolve().parent)
    for arg in config.command[1:]:
        p = Path(arg)
        if not arg.startswith("-") and p.exists():
            paths.append(p.resolve() if p.is_dir() else p.resolve().parent)
    return paths


def server_argv(config: MCPServerConfig, workspace: Path) -> tuple[list[str], dict[str, str]]:
    """(argv, env) to start the server; the sandbox's when the server is not trusted."""
    if config.trusted:
        return list(config.command), {**os.environ, **config.env}
    command = [str(Path(a).resolve()) if i and not a.startswith("-") and Path(a).exists() else a
               for i, a in enumerate(config.command)]  # relative paths mean the same where the server runs
    bwrap = shutil.which("bwrap", path=CLEAN_PATH)
    if bwrap is None:
        raise UserError(f"MCP server {config.name}: the sandbox needs bubblewrap (Debian: apt-get install "
                        "bubblewrap); or mark the server trusted to run it outside the sandbox")
    ws = workspace.resolve()
    env = {**sandbox_env(), "HOME": str(ws), **config.env}
    argv = [bwrap, "--die-with-parent", "--new-session", "--unshare-all", "--unshare-user", "--disable-userns",
            *(["--share-net"] if config.network else []), "--cap-drop", "ALL", "--hostname", "sandbox",
            "--tmpfs", "/tmp", "--ro-bind", "/usr", "/usr",
            "--symlink", "usr/bin", "/bin", "--symlink", "usr/sbin", "/sbin",
            "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64"]
    etc = ["/etc/ld.so.cache", "/etc/ssl", "/etc/localtime", "/etc/alternatives", "/etc/passwd", "/etc/group"]
    if config.network:
        etc += ["/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/gai.conf"]
    for path in etc:
        argv += ["--ro-bind-try", path, path]
    for p in dict.fromkeys(_exposed_paths(config)):
        if not p.is_relative_to("/usr"):
            argv += ["--ro-bind", str(p), str(p)]
    argv += ["--bind", str(ws), str(ws), "--chdir", str(ws), "--proc", "/proc", "--dev", "/dev",
             "--clearenv", *itertools.chain.from_iterable(("--setenv", k, v) for k, v in env.items()),
             "--", *command]
    return argv, {"PATH": CLEAN_PATH}
