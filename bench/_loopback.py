"""Loopback servers for bench/remote_loading.py, each run in its own process.

``python bench/_loopback.py moto``
    moto's S3 server (``ThreadedMotoServer``) on 127.0.0.1, a free port.
``python bench/_loopback.py proxy UPSTREAM DELAY_MS``
    an aiohttp reverse proxy on 127.0.0.1 that waits ``DELAY_MS`` before
    forwarding each request to ``UPSTREAM`` (added round-trip latency, as a
    distant object store adds it).
``python bench/_loopback.py stub FOLDER DELAY_MS``
    the cheapest S3 stand-in: an aiohttp server of the files in ``FOLDER``
    (read into memory) as ``/bench/images/<name>``, answering GET (with a
    ``Range``) and HEAD after ``DELAY_MS``, nothing else. A fraction of
    moto's CPU per request, so the reader's own limits show.

Each prints its port on one line of stdout, then serves until its stdin
closes (the benchmark ends or dies). Only light imports: the servers need
neither torch nor skvision, and a process of their own keeps them off the
reader's GIL, so their CPU time can be measured apart.
"""

import asyncio
import logging
import sys
import threading

# Hop-by-hop headers, and those the proxy's own HTTP stack sets anew.
_DROP = {"connection", "keep-alive", "transfer-encoding", "host", "content-length",
         "proxy-connection", "te", "trailer", "upgrade", "date", "server"}


def serve_moto():
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    print(server.get_host_and_port()[1], flush=True)
    sys.stdin.read()
    server.stop()


def serve_proxy(upstream, delay_ms):
    from aiohttp import ClientSession, TCPConnector, web

    delay = float(delay_ms) / 1000
    session = None

    async def forward(request):
        nonlocal session
        if session is None:  # made on the server's event loop
            session = ClientSession(connector=TCPConnector(limit=0), auto_decompress=False)
        await asyncio.sleep(delay)
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROP}
        async with session.request(request.method, upstream + request.raw_path,
                                   headers=headers, data=body or None,
                                   allow_redirects=False) as answer:
            content = await answer.read()
            out = {k: v for k, v in answer.headers.items() if k.lower() not in _DROP}
            if request.method == "HEAD" and "Content-Length" in answer.headers:
                out["Content-Length"] = answer.headers["Content-Length"]  # the object's
                content = None
            return web.Response(status=answer.status, body=content, headers=out)

    async def close(app):
        if session is not None:
            await session.close()

    app = web.Application(client_max_size=2**30)
    app.router.add_route("*", "/{tail:.*}", forward)
    app.on_cleanup.append(close)
    _run(app)


def serve_stub(folder, delay_ms):
    import email.utils
    import hashlib
    import os

    from aiohttp import web

    delay = float(delay_ms) / 1000
    objects = {}
    for name in os.listdir(folder):
        with open(os.path.join(folder, name), "rb") as handle:
            content = handle.read()
        objects[f"/bench/images/{name}"] = (content, f'"{hashlib.md5(content).hexdigest()}"')
    modified = email.utils.formatdate(usegmt=True)

    async def answer(request):
        if delay:
            await asyncio.sleep(delay)
        found = objects.get(request.path)
        if found is None:
            return web.Response(status=404, body=b"<Error><Code>NoSuchKey</Code></Error>",
                                content_type="application/xml")
        content, etag = found
        headers = {"ETag": etag, "Last-Modified": modified, "Accept-Ranges": "bytes",
                   "Content-Type": "image/jpeg"}
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(content))
            return web.Response(status=200, headers=headers)
        wanted = request.headers.get("Range", "")
        if wanted.startswith("bytes="):
            first, _, last = wanted[6:].partition("-")
            start = int(first) if first else max(0, len(content) - int(last))
            stop = len(content) if not first or not last else min(len(content), int(last) + 1)
            headers["Content-Range"] = f"bytes {start}-{stop - 1}/{len(content)}"
            return web.Response(status=206, body=content[start:stop], headers=headers)
        return web.Response(status=200, body=content, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    _run(app)


def _run(app):
    """Serve ``app`` on a free loopback port, print the port, stop when stdin closes."""
    from aiohttp import web

    async def main():
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        print(site._server.sockets[0].getsockname()[1], flush=True)
        closed = asyncio.Event()
        loop = asyncio.get_running_loop()
        threading.Thread(target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(closed.set)),
                         daemon=True).start()
        await closed.wait()
        await runner.cleanup()

    asyncio.run(main())


if __name__ == "__main__":
    {"moto": serve_moto, "proxy": serve_proxy, "stub": serve_stub}[sys.argv[1]](*sys.argv[2:])
