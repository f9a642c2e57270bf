"""Connecting to the checked address keeps TLS honest: SNI and certificate checks use the host name."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ossagent.tools.base import ToolFailure
from ossagent.tools.browser import HttpFetcher, UrlPolicy

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI is needed to make a cert")


SNI: list[str | None] = []


class _Hello(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = f"<html><title>TLS</title><p>sni={SNI[-1] if SNI else None}</p></html>".encode()
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def tls_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                    "/CN=docs.example", "-addext", "subjectAltName=DNS:docs.example",
                    "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")], check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d / "cert.pem", d / "key.pem")
    ctx.sni_callback = lambda sock, name, c: SNI.append(name)  # type: ignore[assignment,misc]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], d / "cert.pem"
    server.shutdown()
    server.server_close()


def _fetcher(cert: Path | None) -> HttpFetcher:
    policy = UrlPolicy(allow_networks=("127.0.0.1/32",), resolver=lambda host, port: ["127.0.0.1"])
    verify: Any = ssl.create_default_context(cafile=str(cert)) if cert else True
    return HttpFetcher(policy, verify=verify)


def test_sni_and_certificate_use_the_name(tls_site: tuple[int, Path]) -> None:
    port, cert = tls_site
    f = _fetcher(cert)
    resp = f.get(f"https://docs.example:{port}/")
    assert "sni=docs.example" in resp.text()
    with pytest.raises(ToolFailure, match="Error fetching"):  # same address, another name: cert mismatch
        f.get(f"https://other.example:{port}/")
    f.close()


def test_untrusted_certificates_fail(tls_site: tuple[int, Path]) -> None:
    port, _ = tls_site
    f = _fetcher(None)
    with pytest.raises(ToolFailure, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
        f.get(f"https://docs.example:{port}/")
    f.close()
