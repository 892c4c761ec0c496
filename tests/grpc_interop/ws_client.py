"""A real third-party WebSocket client (the `websockets` library) against logmill's /v1/ws.

    ws_client.py send URL [TOKEN] [ACKED]   messages from stdin (a JSON list of {"text": ...} or
                                            {"binary_hex": ...}); with ACKED, reads acks until
                                            one covers ACKED records; closes; prints a JSON line
    ws_client.py refused URL [TOKEN]        prints the HTTP status and body of a refused upgrade
"""

import json
import sys

from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect


def main():
    command, url = sys.argv[1], sys.argv[2]
    token = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] else None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if command == "refused":
        try:
            with connect(url, additional_headers=headers, open_timeout=20):
                pass
        except InvalidStatus as e:
            body = e.response.body.decode() if e.response.body else ""
            print(json.dumps({"status": e.response.status_code, "body": body}))
            return
        print(json.dumps({"status": 101}))
        return
    acked = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    messages = json.load(sys.stdin)
    acks = []
    with connect(url, additional_headers=headers, open_timeout=20) as ws:
        for message in messages:
            if "text" in message:
                ws.send(message["text"])
            else:
                ws.send(bytes.fromhex(message["binary_hex"]))
        while acked and (not acks or acks[-1]["ack"] < acked):
            acks.append(json.loads(ws.recv(timeout=20)))
        ws.close()
        rcvd = ws.protocol.close_rcvd
        code = rcvd.code if rcvd else None
    print(json.dumps({"acks": acks, "close_code": code}))


if __name__ == "__main__":
    main()
