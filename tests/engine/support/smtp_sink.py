"""A real SMTP server for the notification tests (aiosmtpd).

    python smtp_sink.py --port PORT --dir DIR [--reject PREFIX ...]

Listens on 127.0.0.1:PORT, prints "ready" once it accepts connections, and writes every message
it accepts to DIR/NNNN.json: the envelope (mail_from, rcpt_tos), the Subject, and the decoded
text/plain and text/html parts. RCPT TO an address starting with a --reject prefix is refused
with a permanent 550. Runs until killed.
"""
import argparse
import email
import email.policy
import json
import os
import threading
import time

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, out, reject):
        self.out = out
        self.reject = [r.lower() for r in reject]
        self.lock = threading.Lock()
        self.n = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if any(address.lower().startswith(r) for r in self.reject):
            return "550 5.1.1 <%s>: mailbox unavailable" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        text = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "subject": str(msg["Subject"]),
            "message_id": str(msg["Message-ID"]),
            "content_type": msg.get_content_type(),
            "text": text.get_content() if text is not None else None,
            "html": html.get_content() if html is not None else None,
        }
        with self.lock:
            self.n += 1
            name = os.path.join(self.out, "%04d.json" % self.n)
        with open(name + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(name + ".tmp", name)
        return "250 Message accepted for delivery"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--reject", action="append", default=[])
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    controller = Controller(Sink(args.dir, args.reject), hostname="127.0.0.1", port=args.port)
    controller.start()
    print("ready", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
