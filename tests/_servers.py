"""Servers on loopback that stand in for object storage and the web, for the remote-data tests.

* :func:`moto_s3`: moto's S3 server (``ThreadedMotoServer``), with fsspec's
  ``s3`` configuration pointed at it, as a user's would point at their store.
* :class:`FileServer`: an HTTP server of in-memory files that can add a
  delay, answer 503 a given number of times, cut a body short, or stop
  answering; it honours ``Range`` requests and counts what it serves.

Nothing here mocks fsspec: s3fs and fsspec's HTTP filesystem talk to these
servers over real sockets.
"""

import contextlib
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# A fake secret key: no test output, error, repr or saved file may contain it.
FAKE_SECRET = "FAKE-SECRET-d41d8cd98f00b204"
FAKE_KEY_ID = "FAKEKEYID0000"


def _s3_client(endpoint):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=FAKE_KEY_ID, aws_secret_access_key=FAKE_SECRET)


@contextlib.contextmanager
def moto_s3(monkeypatch, files, bucket="images"):
    """moto's S3 server holding ``files`` (key -> bytes) in ``bucket``; yields its endpoint.

    fsspec's ``s3`` configuration (what a user sets in ``~/.config/fsspec``
    or ``FSSPEC_S3_*`` variables) points s3fs at it, with a fake key pair.
    """
    import fsspec
    import s3fs
    from moto.server import ThreadedMotoServer

    # moto's werkzeug server logs every request otherwise.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        client = _s3_client(endpoint)
        client.create_bucket(Bucket=bucket)
        for key, content in files.items():
            client.put_object(Bucket=bucket, Key=key, Body=content)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_KEY_ID)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        monkeypatch.setitem(fsspec.config.conf, "s3", {
            "endpoint_url": endpoint, "key": FAKE_KEY_ID, "secret": FAKE_SECRET,
        })
        s3fs.S3FileSystem.clear_instance_cache()
        yield endpoint
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        server.stop()


class FileServer:
    """An HTTP server of in-memory files, with faults on demand.

    Attributes set by a test:

    * ``files``: path (``/a.jpg``) -> bytes;
    * ``delay``: seconds added before each answer;
    * ``fail``: path -> how many more requests get 503;
    * ``truncate``: path -> bytes sent of the body (its full length announced);
    * ``status``: path -> an error status answered every time (403, ...);
    * ``hang``: when True, requests are read and never answered.
    * ``etags``: path -> the ``ETag`` header its answers carry.

    ``requests`` lists the paths asked for, query strings dropped.
    """

    def __init__(self, files=None):
        self.files = dict(files or {})
        self.delay = 0.0
        self.fail = {}
        self.truncate = {}
        self.status = {}
        self.hang = False
        self.etags = {}
        self.requests = []
        self._release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):
                """Silenced: the tests read ``requests`` instead of a log."""

            def do_HEAD(self):
                self._answer(body=False)

            def do_GET(self):
                self._answer(body=True)

            def _answer(self, body):
                path = self.path.split("?")[0]
                server.requests.append(path)
                if server.hang:
                    server._release.wait(60)
                    self.close_connection = True
                    return
                if server.delay:
                    time.sleep(server.delay)
                if server.fail.get(path, 0) > 0:
                    server.fail[path] -= 1
                    self._send(503, b"busy")
                    return
                if path in server.status:
                    self._send(server.status[path], b"refused")
                    return
                content = server.files.get(path)
                if content is None:
                    self._send(404, b"not found")
                    return
                status, content, extra = 200, content, {}
                wanted = self.headers.get("Range")
                if wanted and wanted.startswith("bytes="):
                    first, _, last = wanted[6:].partition("-")
                    size = len(content)
                    if first == "":
                        start, stop = max(0, size - int(last)), size
                    else:
                        start = int(first)
                        stop = size if last == "" else min(size, int(last) + 1)
                    extra["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
                    status, content = 206, content[start:stop]
                if path in server.etags:
                    extra["ETag"] = server.etags[path]
                sent = server.truncate.get(path)
                self._send(status, content, extra, body=body, sent=sent)

            def _send(self, status, content, extra=(), body=True, sent=None):
                self.send_response(status)
                self.send_header("Content-Length", str(len(content)))
                for name, value in dict(extra).items():
                    self.send_header(name, value)
                if sent is not None:
                    self.send_header("Connection", "close")
                self.end_headers()
                if body:
                    self.wfile.write(content if sent is None else content[:sent])
                if sent is not None:
                    self.close_connection = True

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
