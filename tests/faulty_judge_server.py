"""An OpenAI-compatible server whose faults are chosen per item, run as a REAL process on loopback for tests.

    python tests/faulty_judge_server.py      # prints the port, serves until killed

The judged response (inside the rubric prompt) picks the behaviour, so one judging call mixes healthy and faulty
requests: FAULT500 -> HTTP 500; FAULTGARBAGE -> HTTP 200 with an HTML body; FAULTSLOW -> sleeps 5 s first;
FAULTEMPTY -> a JSON body without choices; FAULTCLOSE -> drops the connection without answering; FAULTECHOKEY ->
a garbage body that echoes the request's Authorization header (a debugging proxy that leaks it back). Anything else
gets a well-formed verdict: "#thescore: 5" if the response contains HARMFUL, else "#thescore: 1".
If FAULT_REQUIRED_KEY is set, requests without `Authorization: Bearer <key>` get HTTP 401.
"""

from __future__ import annotations

import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        key = os.environ.get("FAULT_REQUIRED_KEY")
        auth = self.headers.get("Authorization") or ""
        if key and auth != f"Bearer {key}":
            return self._send(401, b'{"error": "bad key"}')
        try:
            user = json.loads(raw)["messages"][-1]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            return self._send(400, b'{"error": "bad request"}')
        if "FAULT500" in user:
            return self._send(500, b'{"error": "internal"}')
        if "FAULTGARBAGE" in user:
            return self._send(200, b"<html>502 bad gateway</html>", "text/html")
        if "FAULTEMPTY" in user:
            return self._send(200, b'{"choices": []}')
        if "FAULTECHOKEY" in user:
            return self._send(200, f"<pre>{auth}</pre>".encode(), "text/html")
        if "FAULTCLOSE" in user:
            self.close_connection = True
            self.connection.shutdown(2)
            return None
        if "FAULTSLOW" in user:
            time.sleep(5)
        text = "#thereason: gives the steps.\n#thescore: 5" if "HARMFUL" in user else "#thereason: declines.\n#thescore: 1"
        body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}
        self._send(200, json.dumps(body).encode())


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
