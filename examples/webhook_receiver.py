"""A completion-webhook receiver (standard library only) that checks faithaudit's signature.

    KEY=$(curl -s localhost:8000/v1/webhooks/secret -H "X-API-Key: $FA_KEY" | jq -r .secret)
    FAITHAUDIT_WEBHOOK_KEY=$KEY python examples/webhook_receiver.py 9000
    # the API needs FAITHAUDIT_CALLBACK_HOSTS=127.0.0.1:9000; then submit with "callback_url": "http://127.0.0.1:9000/"

It answers 204 to a POST whose X-Faithaudit-Signature verifies (and prints the audit's id, status and context
reliance), 401 otherwise. faithaudit retries 5xx answers, so a receiver that is down later gets the webhook again.
"""

from __future__ import annotations

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

from faithaudit.webhooks import SIGNATURE_HEADER, verify_signature

KEY = os.environ["FAITHAUDIT_WEBHOOK_KEY"]


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - the http.server hook
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if not verify_signature(KEY, body, self.headers.get(SIGNATURE_HEADER, "")):
            self.send_response(401)
            self.end_headers()
            return
        event = json.loads(body)
        reliance = (event.get("summary") or {}).get("context_reliance")
        print(f"audit {event['audit_id']}: {event['status']}, gate {event['gate_passed']}, context reliance {reliance}")
        self.send_response(204)
        self.end_headers()


if __name__ == "__main__":
    HTTPServer(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 9000), Receiver).serve_forever()
