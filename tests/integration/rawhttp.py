"""A raw-socket (optionally raw-TLS) HTTP/1.1 client for malformed requests.

http.client refuses to send most of what the abuse tests need (NUL bytes, bad
Content-Length, broken chunking, several requests in one write, non-HTTP bytes), so these
helpers write bytes as given and parse what comes back without trusting it: zero or more
HTTP/1.x responses, then possibly a close.

    ex = exchange(port, b"GET /alive HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
    ex.responses[0].status == 200; ex.closed tells whether the server closed the connection.
"""
import json
import re
import select
import socket
import ssl
import time

_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) (\d{3})(?: ([^\r\n]*))?\r\n")


class RawResponse:
    def __init__(self, version: str, status: int, reason: str, headers: list, body: bytes):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers  # [(lower-case name, value)], in order
        self.body = body

    def header(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def header_all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.headers if k == name]

    def content_type(self) -> str:
        return (self.header("content-type") or "").split(";")[0].strip().lower()

    def json(self):
        return json.loads(self.body)

    def __repr__(self) -> str:
        hdrs = "; ".join(f"{k}: {v}" for k, v in self.headers)
        return f"<HTTP/{self.version} {self.status} [{hdrs}] {self.body[:300]!r}>"


class Incomplete(Exception):
    """More bytes are needed to finish the response."""


class Garbage(Exception):
    """The bytes are not an HTTP/1.x response."""


def _parse_chunked(data: bytes, pos: int) -> tuple[bytes, int]:
    body = b""
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            raise Incomplete()
        size_text = data[pos:eol].split(b";")[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise Garbage(f"bad chunk size {size_text!r}")
        pos = eol + 2
        if size == 0:
            # trailers until an empty line
            while True:
                eol = data.find(b"\r\n", pos)
                if eol < 0:
                    raise Incomplete()
                line = data[pos:eol]
                pos = eol + 2
                if not line:
                    return body, pos
        if len(data) < pos + size + 2:
            raise Incomplete()
        body += data[pos:pos + size]
        pos += size + 2


def parse_one(data: bytes, eof: bool = False) -> tuple[RawResponse, int]:
    """Parses one response at the start of data; returns it and the bytes consumed.
    Raises Incomplete if more bytes are needed (a body delimited by close needs eof)."""
    m = _STATUS_LINE.match(data)
    if not m:
        if not eof and b"\r\n" not in data and len(data) < 256:
            raise Incomplete()
        raise Garbage(data[:64])
    end = data.find(b"\r\n\r\n", m.start())
    if end < 0:
        raise Incomplete()
    headers = []
    for line in data[m.end():end].split(b"\r\n"):
        if not line:
            continue
        k, sep, v = line.partition(b":")
        if not sep:
            raise Garbage(line[:64])
        headers.append((k.decode("latin-1").strip().lower(), v.decode("latin-1").strip()))
    resp = RawResponse("1." + m.group(1).decode(), int(m.group(2)),
                       (m.group(3) or b"").decode("latin-1"), headers, b"")
    pos = end + 4
    te = (resp.header("transfer-encoding") or "").lower()
    cl = resp.header("content-length")
    if resp.status in (204, 304) or 100 <= resp.status < 200:
        return resp, pos
    if "chunked" in te:
        resp.body, pos = _parse_chunked(data, pos)
        return resp, pos
    if cl is not None:
        n = int(cl)
        if len(data) < pos + n:
            raise Incomplete()
        resp.body = data[pos:pos + n]
        return resp, pos + n
    if not eof:
        raise Incomplete()
    resp.body = data[pos:]
    return resp, len(data)


def parse_all(data: bytes, eof: bool = True) -> tuple[list[RawResponse], bytes]:
    """Every complete response in data, and the bytes left over."""
    out = []
    while data:
        try:
            r, n = parse_one(data, eof)
        except (Incomplete, Garbage):
            break
        out.append(r)
        data = data[n:]
    return out, data


class RawConn:
    """One TCP (or TLS) connection that sends bytes verbatim."""

    def __init__(self, port: int, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None,
                 timeout: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname=host)
        self.buf = b""
        self.eof = False
        self.reset = False

    def send(self, data: bytes) -> bool:
        """False if the server had already closed (the bytes could not all be written)."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            self.reset = True
            return False

    def shutdown_write(self) -> None:
        try:
            if isinstance(self.sock, ssl.SSLSocket):
                return  # a TLS half-close would need close_notify; not used by the tests
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _fill(self, deadline: float) -> bool:
        """Reads more; False on timeout, EOF or reset (see self.eof / self.reset)."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        pending = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()
        if not pending:
            ready, _, _ = select.select([self.sock], [], [], remaining)
            if not ready:
                return False
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            self.eof = self.reset = True
            return False
        except ssl.SSLWantReadError:
            return True
        except (ssl.SSLError, OSError):
            self.eof = self.reset = True
            return False
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def read_response(self, timeout: float = 10.0) -> RawResponse | None:
        """The next response, or None if the server closed (or went quiet) first."""
        deadline = time.monotonic() + timeout
        while True:
            if self.buf:
                try:
                    r, n = parse_one(self.buf, self.eof)
                    self.buf = self.buf[n:]
                    return r
                except Incomplete:
                    pass
                except Garbage:
                    return None
            if not self._fill(deadline):
                if self.eof and self.buf:
                    try:
                        r, n = parse_one(self.buf, True)
                        self.buf = self.buf[n:]
                        return r
                    except (Incomplete, Garbage):
                        return None
                return None

    def read_responses(self, n: int, timeout: float = 10.0) -> list[RawResponse]:
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            r = self.read_response(max(0.0, deadline - time.monotonic()))
            if r is None:
                break
            out.append(r)
        return out

    def closed_by_server(self, timeout: float = 3.0) -> bool:
        """Whether the server closes the connection within timeout (bytes it sends first
        are kept in self.buf)."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            if not self._fill(deadline) and not self.eof:
                return False
        return True

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Exchange:
    def __init__(self, responses: list[RawResponse], closed: bool, rest: bytes):
        self.responses = responses
        self.closed = closed  # the server closed (or reset) the connection
        self.rest = rest      # bytes that were not a complete HTTP/1.x response

    @property
    def statuses(self) -> list[int]:
        return [r.status for r in self.responses]

    def __repr__(self) -> str:
        return f"<Exchange {self.responses} closed={self.closed} rest={self.rest[:120]!r}>"


def exchange(port: int, data: bytes, tls: ssl.SSLContext | None = None, expect: int = 1,
             timeout: float = 5.0, shut_wr: bool = False, linger: float = 0.05) -> Exchange:
    """Sends data on a fresh connection, then reads up to `expect` responses (waiting at
    most timeout for each) and, after them, whether the server closes within `linger`."""
    with RawConn(port, tls=tls, timeout=timeout) as c:
        c.send(data)
        if shut_wr:
            c.shutdown_write()
        responses = []
        for _ in range(expect):
            r = c.read_response(timeout)
            if r is None:
                break
            responses.append(r)
        # Wait long for the close when the server announced it (or answered less than
        # expected), briefly otherwise: a keep-alive connection stays open.
        announced = any((r.header("connection") or "").lower() == "close" for r in responses)
        wait = timeout if announced or len(responses) < expect else linger
        closed = c.eof or c.closed_by_server(wait)
        rest = c.buf
        return Exchange(responses, closed, rest)


def request_bytes(method: str, path: str, headers: list | dict | None = None, body: bytes = b"",
                  version: str = "HTTP/1.1", host: str | None = "127.0.0.1",
                  content_length: bool = True) -> bytes:
    """One request, with Host and (if there is a body) Content-Length unless told not to."""
    hdrs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    names = {k.lower() if isinstance(k, str) else k.decode().lower() for k, _ in hdrs}
    if host is not None and "host" not in names:
        hdrs.insert(0, ("Host", host))
    if content_length and body and "content-length" not in names and "transfer-encoding" not in names:
        hdrs.append(("Content-Length", str(len(body))))
    out = f"{method} {path} {version}\r\n".encode() if isinstance(path, str) else \
        method.encode() + b" " + path + b" " + version.encode() + b"\r\n"
    for k, v in hdrs:
        kb = k.encode("latin-1") if isinstance(k, str) else k
        vb = v.encode("latin-1") if isinstance(v, str) else v
        out += kb + b": " + vb + b"\r\n"
    return out + b"\r\n" + body


def vm_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def assert_keyhold_error(r: RawResponse, status: int, code: str) -> dict:
    """A keyhold JSON error on a raw response: exact status and code."""
    assert r is not None, "no response"
    assert r.status == status, r
    assert r.content_type() == "application/json", r
    body = r.json()
    assert isinstance(body, dict) and body.get("code") == code, r
    assert isinstance(body.get("message"), str) and body["message"], r
    return body


def assert_refused(ex: Exchange, statuses: set | None = None) -> None:
    """An attack's outcome: every response 4xx (in statuses if given), or none and a closed
    connection; never a 5xx, never a 2xx."""
    for r in ex.responses:
        assert 400 <= r.status < 500, ex
        if statuses is not None:
            assert r.status in statuses, ex
        if r.content_type() == "application/json":
            body = r.json()
            assert isinstance(body, dict) and isinstance(body.get("code"), str) and \
                isinstance(body.get("message"), str), ex
    if not ex.responses:
        assert ex.closed, ex
