"""A JSON-RPC proxy on 127.0.0.1 that misbehaves on purpose, in front of a real node.

It can drop the response to a request after forwarding it (the node acted, the client never
heard), refuse log queries over too many blocks (as hosted providers do), or accept
connections and never answer (a hung endpoint).
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Faults:
    drop_responses: dict[str, int] = field(default_factory=dict)  # method -> times left
    max_log_blocks: int | None = None
    hang: bool = False
    hang_only: set[str] | None = None  # hang just these methods (None: every one)
    seen: list[str] = field(default_factory=list)  # methods, in order
    hung: list[str] = field(default_factory=list)  # methods held by ``hang``, in order
    released: threading.Event = field(default_factory=threading.Event)


def _handler(upstream: str, faults: Faults) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            """Quiet: the tests assert on ``faults.seen``."""

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            call = json.loads(body)
            method = call.get("method", "")
            if faults.hang and (faults.hang_only is None or method in faults.hang_only):
                faults.hung.append(method)
                faults.released.wait(60)
                return
            faults.seen.append(method)
            too_wide = self._too_wide(call)
            if too_wide:
                self._reply(json.dumps({"jsonrpc": "2.0", "id": call.get("id"), "error": {
                    "code": -32005, "message": too_wide}}).encode())
                return
            req = urllib.request.Request(upstream, body, {"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as r:
                answer = r.read()
            if faults.drop_responses.get(method, 0) > 0:
                faults.drop_responses[method] -= 1
                self.close_connection = True  # the node has acted; the client hears nothing
                return
            self._reply(answer)

        def _too_wide(self, call: dict) -> str | None:  # type: ignore[type-arg]
            if call.get("method") != "eth_getLogs" or faults.max_log_blocks is None:
                return None
            q = call["params"][0]
            span = int(q["toBlock"], 16) - int(q["fromBlock"], 16) + 1
            if span > faults.max_log_blocks:
                return f"block range too large: {span} > {faults.max_log_blocks}"
            return None

        def _reply(self, data: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@contextmanager
def rpc_proxy(upstream: str, faults: Faults) -> Iterator[str]:
    """Serve the proxy on a free loopback port; yields its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(upstream, faults))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        faults.released.set()
        server.shutdown()
        server.server_close()
