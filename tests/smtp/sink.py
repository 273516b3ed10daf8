#!/usr/bin/env python3
"""A loopback SMTP sink for tests/smtp.rs, on aiosmtpd.

    python3 tests/smtp/sink.py PORT DIR

Listens on 127.0.0.1:PORT (no STARTTLS, no AUTH) and writes every accepted message to DIR as
NNNN.eml: "X-Envelope-From: ..." and one "X-Envelope-To: ..." line per recipient, a blank line,
then the data as received. The file is written under a temporary name and renamed, so a reader
never sees half a message. Prints "ready" once listening; runs until killed.
"""
import itertools
import os
import signal
import sys
import threading

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, directory):
        self.directory = directory
        self.counter = itertools.count(1)
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            n = next(self.counter)
        head = "X-Envelope-From: %s\r\n" % envelope.mail_from
        head += "".join("X-Envelope-To: %s\r\n" % rcpt for rcpt in envelope.rcpt_tos)
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8")
        tmp = os.path.join(self.directory, ".%04d.tmp" % n)
        with open(tmp, "wb") as f:
            f.write(head.encode("utf-8") + b"\r\n" + data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(self.directory, "%04d.eml" % n))
        return "250 2.0.0 Ok: queued as %04d" % n


def main():
    port, directory = int(sys.argv[1]), sys.argv[2]
    os.makedirs(directory, exist_ok=True)
    controller = Controller(Sink(directory), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    controller.stop()


if __name__ == "__main__":
    main()
