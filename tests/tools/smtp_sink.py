"""A real SMTP server for the email tests: aiosmtpd on 127.0.0.1:PORT, writing each message it
accepts to DIR as one .eml file (written then renamed, so a reader never sees half a message).

Usage: python3 smtp_sink.py PORT DIR
"""
import os
import sys
import threading
import uuid

from aiosmtpd.controller import Controller


class SaveToDir:
    def __init__(self, directory):
        self.directory = directory

    async def handle_DATA(self, server, session, envelope):
        name = uuid.uuid4().hex
        tmp = os.path.join(self.directory, name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(envelope.content)
        os.rename(tmp, os.path.join(self.directory, name + ".eml"))
        return "250 Message accepted for delivery"


def main():
    port, directory = int(sys.argv[1]), sys.argv[2]
    controller = Controller(SaveToDir(directory), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
