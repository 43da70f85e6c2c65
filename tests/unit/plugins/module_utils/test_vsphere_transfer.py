"""The download loop of vsphere_export against a local HTTP server with Range support: real bytes, real files."""

import hashlib
import http.server
import os
import re
import socket
import ssl
import struct
import subprocess
import threading
import time

import pytest

from ansible_collections.v2kvm.migrate.plugins.module_utils import _vsphere_export as vexport
from ansible_collections.v2kvm.migrate.plugins.module_utils import _vsphere_transfer as transfer
from ansible_collections.v2kvm.migrate.plugins.module_utils._vsphere_conn import VsphereError

DATA = os.urandom(3 * transfer.CHUNK + 12345)  # several buffers plus an unaligned tail


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    data = DATA
    honor_range = True
    cut_after = None  # bytes after which the server drops the connection
    requests = []

    def do_GET(self):  # noqa: N802 - http.server's naming
        type(self).requests.append((self.headers.get("Cookie"), self.headers.get("Range")))
        data = self.data
        start, status = 0, 200
        match = re.match(r"bytes=(\d+)-(\d*)$", self.headers.get("Range") or "")
        end = len(data)
        if match and self.honor_range:
            start, status = int(match.group(1)), 206
            end = int(match.group(2)) + 1 if match.group(2) else len(data)
        self.send_response(status)
        self.send_header("Content-Length", str(end - start))
        if status == 206:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end - 1, len(data)))
        self.end_headers()
        body = data[start:end]
        if self.cut_after is not None:
            body = body[:self.cut_after]
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # a client that hangs up on purpose (a refused resume, a cut transfer) is no news


@pytest.fixture
def server():
    _Handler.requests = []
    _Handler.cut_after = None
    _Handler.data = DATA
    _Handler.honor_range = True
    httpd = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d/disk-0.vmdk" % httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def _download(url, dest, **kwargs):
    with transfer.Session("vmware_soap_session=abc", verify=False) as session:
        return transfer.download(session, url, str(dest), label="disk scsi0-0 of web01", **kwargs)


def test_download_writes_hashes_and_sends_the_session_cookie(server, tmp_path):
    seen = []
    sha1, size, fetched = _download(server, tmp_path / "d.vmdk", expected_size=len(DATA),
                                    on_bytes=lambda count, resumed=False: seen.append(count))
    assert (tmp_path / "d.vmdk").read_bytes() == DATA and not (tmp_path / "d.vmdk.part").exists()
    assert sha1 == hashlib.sha1(DATA).hexdigest() and size == fetched == len(DATA) == sum(seen)  # noqa: S324
    assert _Handler.requests == [("vmware_soap_session=abc", None)]


@pytest.mark.parametrize("direct", [True, False], ids=["o_direct", "page_cache"])
def test_resume_from_an_unaligned_offset_fetches_only_the_rest(server, tmp_path, monkeypatch, direct):
    if not direct:  # as on a file system that refuses O_DIRECT
        monkeypatch.setattr(transfer, "_open_direct", lambda path: None)
    kept = transfer.CHUNK + 777
    (tmp_path / "d.vmdk.part").write_bytes(DATA[:kept])
    sha1, size, fetched = _download(server, tmp_path / "d.vmdk", expected_size=len(DATA))
    assert _Handler.requests[-1][1] == "bytes=%d-" % kept
    assert fetched == len(DATA) - kept and size == len(DATA)
    assert (tmp_path / "d.vmdk").read_bytes() == DATA
    assert sha1 == hashlib.sha1(DATA).hexdigest(), "the kept prefix is part of the hash"  # noqa: S324


def test_connection_dropped_midway_keeps_the_part_for_a_resume(server, tmp_path):
    _Handler.cut_after = 2 * transfer.CHUNK + 100
    with pytest.raises(transfer.TransferBroken, match="broke off after"):
        _download(server, tmp_path / "d.vmdk", expected_size=len(DATA))
    assert (tmp_path / "d.vmdk.part").read_bytes() == DATA[:_Handler.cut_after]
    _Handler.cut_after = None
    sha1, unused, fetched = _download(server, tmp_path / "d.vmdk", expected_size=len(DATA))
    assert fetched == len(DATA) - (2 * transfer.CHUNK + 100)
    assert (tmp_path / "d.vmdk").read_bytes() == DATA


def test_a_failing_write_is_named_as_a_local_problem(server, tmp_path, monkeypatch):
    def full_disk(fd, view, offset):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(transfer, "_write_all", full_disk)
    with pytest.raises(VsphereError, match="No space left on device") as caught:
        _download(server, tmp_path / "d.vmdk", expected_size=len(DATA))
    assert not isinstance(caught.value, transfer.TransferBroken), "retrying would not help"
    assert "free space" in caught.value.fix


def test_fetch_range_and_read_ranges(server, tmp_path):
    with transfer.Session("c=1", verify=False) as session:
        assert transfer.fetch_range(session, server, 5000, 100, label="x") == DATA[5000:5100]
        with open(tmp_path / "sparse.raw", "wb") as handle:
            handle.truncate(len(DATA))
            copied = transfer.read_ranges(session, server, [(0, 4096), (transfer.CHUNK, 70000)], handle, label="x")
    assert copied == 4096 + 70000
    got = (tmp_path / "sparse.raw").read_bytes()
    assert got[:4096] == DATA[:4096] and got[transfer.CHUNK:transfer.CHUNK + 70000] == DATA[
        transfer.CHUNK:transfer.CHUNK + 70000]
    assert got[4096:transfer.CHUNK] == bytes(transfer.CHUNK - 4096)


def _stream(cid):
    """A streamOptimized-like file: a KDMV header whose overHead (128 sectors) covers a descriptor with ``cid``,
    then the same 3 MiB of grains whatever the cid."""
    header = bytearray(512)
    header[:4] = b"KDMV"
    struct.pack_into("<Q", header, 64, 128)
    head = bytes(header) + ("# Disk DescriptorFile\nCID=%s\n" % cid).encode().ljust(127 * 512, b"\0")
    return head + GRAINS


GRAINS = os.urandom(3 << 20)


@pytest.mark.parametrize("case", ["same_disk", "changed_tail", "no_range"])
def test_part_of_an_earlier_lease_is_adopted_only_when_it_matches(server, tmp_path, case):
    earlier, now = _stream("aaaa1111"), _stream("bbbb2222")
    kept = 2 * 1024 * 1024 + 3000
    part = tmp_path / "d.vmdk.part"
    kept_bytes = bytearray(earlier[:kept])
    if case == "changed_tail":
        kept_bytes[kept - 10] ^= 0xFF  # what a write-back lost in a crash, or a disk that changed since
    part.write_bytes(bytes(kept_bytes))
    _Handler.data = now
    _Handler.honor_range = case != "no_range"
    with transfer.Session("c=1", verify=False) as session:
        probed = vexport._adopt_earlier_part(session, server, str(part), label="x", timeout=10)
    if case == "same_disk":
        assert probed == vexport.RESUME_HEAD + vexport.RESUME_PROBE
        assert part.read_bytes() == now[:kept], "the head comes from the new lease, the grains are kept"
    else:
        assert probed is None


# ---- network failures, in each caller's words (real sockets) ----

STALL = 0.5


@pytest.fixture
def raw_server():
    """A TCP server that answers a GET with the head of a long body and then misbehaves as ``behaviour`` says:
    'silent' (never answers), 'stall' (stops sending) or 'reset' (drops the connection with a TCP RST)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    state = {"behaviour": "stall", "held": []}
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, unused = listener.accept()
            except TimeoutError:
                continue
            state["held"].append(conn)
            if state["behaviour"] == "silent":
                continue
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            status = b"206 Partial Content" if b"\r\nrange:" in request.lower() else b"200 OK"
            conn.sendall(b"HTTP/1.1 %s\r\nContent-Length: %d\r\n\r\n" % (status, 1 << 30) + bytes(1000))
            if state["behaviour"] == "reset":
                time.sleep(0.2)  # the client reads the head first: the reset comes mid-body
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    state["url"] = "http://127.0.0.1:%d/disk-0.vmdk" % listener.getsockname()[1]
    yield state
    stop.set()
    thread.join()
    listener.close()
    for conn in state["held"]:
        conn.close()


def _call(caller, session, url, tmp_path):
    if caller == "download":
        return transfer.download(session, url, str(tmp_path / "d.vmdk"), label="x", timeout=STALL)
    if caller == "fetch_range":
        return transfer.fetch_range(session, url, 5000, 100, label="x", timeout=STALL)
    with open(tmp_path / "sparse.raw", "wb") as handle:
        return transfer.read_ranges(session, url, [(0, 4096)], handle, label="x", timeout=STALL)


WORDING = {  # caller: (what the problem names, the fix, whether it is a TransferBroken the export retries)
    "download": ("the download of x", "run again: it resumes from the bytes already received", True),
    "fetch_range": ("reading x", "run again", True),
    "read_ranges": ("reading changed areas of x", "run again: the sync restarts from the last recorded changeId",
                    False),
}


@pytest.mark.parametrize("caller", sorted(WORDING))
@pytest.mark.parametrize("behaviour", ["silent", "stall", "reset"])
def test_network_failures_are_named_in_each_callers_words(raw_server, tmp_path, caller, behaviour):
    raw_server["behaviour"] = behaviour
    what, fix, retried = WORDING[caller]
    with transfer.Session("c=1", verify=False) as session, pytest.raises(VsphereError) as caught:
        _call(caller, session, raw_server["url"], tmp_path)
    if behaviour == "reset":
        assert caught.value.problem == "%s broke off (ConnectionResetError)" % what
    else:
        assert caught.value.problem == "%s stalled for more than %s s" % (what, STALL)
    assert caught.value.fix == fix
    assert isinstance(caught.value, transfer.TransferBroken) == retried
    assert caught.value.__cause__ is None and caught.value.__suppress_context__, "no socket traceback in the output"


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    cert, key = str(folder / "c.pem"), str(folder / "k.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


@pytest.mark.parametrize("caller", sorted(WORDING))
def test_an_untrusted_certificate_is_named_as_such(self_signed, tmp_path, caller):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*self_signed)
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        with transfer.Session("c=1", verify=True) as session, pytest.raises(VsphereError) as caught:
            _call(caller, session, "https://127.0.0.1:%d/disk-0.vmdk" % httpd.server_address[1], tmp_path)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert caught.value.problem == "TLS verification failed for the download of x"
    assert "validate_certs: false" in caught.value.fix
    assert not isinstance(caught.value, transfer.TransferBroken), "retrying would not help"


@pytest.mark.parametrize("caller", ["fetch_range", "read_ranges"])
def test_a_whole_file_answer_to_a_range_request_is_refused(server, tmp_path, caller):
    _Handler.honor_range = False
    with transfer.Session("c=1", verify=False) as session:
        with pytest.raises(VsphereError) as caught:
            _call(caller, session, server, tmp_path)
        assert caught.value.problem == "the server ignored the byte range of x (HTTP 200)"
        if caller == "fetch_range":  # the export then starts the download over
            assert isinstance(caught.value, transfer.RangeNotServed)
            assert "remove the .part file" in caught.value.fix
        else:
            assert not isinstance(caught.value, transfer.RangeNotServed) and "use a full copy" in caught.value.fix
        _Handler.honor_range = True
        # The unread whole-file body went with its connection: the next request gets its own bytes.
        assert transfer.fetch_range(session, server, 5000, 100, label="x") == DATA[5000:5100]
