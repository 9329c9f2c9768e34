"""tests/integration/test_relay_limits.py: connection reuse, the per-destination limit over
all shards, opportunistic TLS that fails, and BODY=8BITMIME (issue 6).

Real parts: dnsmasq on 127.0.0.1 (started here, never the machine's resolver), Postfix's
smtp-sink where it can do the job, and for what smtp-sink cannot do (count concurrent
connections exactly, hold replies, answer STARTTLS with garbage) a small scripted SMTP
server of this file on a real loopback socket. The relay daemon runs 2 shards; mail comes
in from a trusted client over several connections so that both shards spool some.
Every wait is bounded.
"""

import os
import re
import smtplib
import socket
import socketserver
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from smtp_util import smtp_config, wait_for, wait_mailbox  # noqa: E402
import test_relay  # noqa: E402

DEMO = "demo@example.test"
RECORDS = [
    "--local=/test/",
    "--mx-host=held.test,mx.held.test,10",
    "--host-record=mx.held.test,127.0.0.21",
    "--mx-host=badtls.test,mx.badtls.test,10",
    "--host-record=mx.badtls.test,127.0.0.22",
    "--mx-host=eight.test,mx.eight.test,10",
    "--host-record=mx.eight.test,127.0.0.23",
    "--mx-host=seven.test,mx.seven.test,10",
    "--host-record=mx.seven.test,127.0.0.24",
    "--mx-host=reuse.test,mx.reuse.test,10",
    "--host-record=mx.reuse.test,127.0.0.25",
]


class ScriptedMx(socketserver.ThreadingTCPServer):
    """A minimal SMTP server: counts connections and the most open at once, records each
    session's commands and messages. `hold_s`: wait that long before the reply to the end
    of DATA (a slow destination, so that concurrent connections overlap). `starttls`:
    "garbage" offers STARTTLS and answers the handshake with bytes that are not TLS."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, port, hold_s=0.0, starttls=None):
        self.hold_s = hold_s
        self.starttls = starttls
        self.lock = threading.Lock()
        self.open_now = 0
        self.open_max = 0
        self.connections = 0
        self.sessions = []  # Per connection: list of command lines.
        self.messages = []  # (session index, data bytes)
        super().__init__((address, port), ScriptedSession)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.shutdown()
        self.server_close()


class ScriptedSession(socketserver.StreamRequestHandler):
    def handle(self):
        server = self.server
        with server.lock:
            server.connections += 1
            server.open_now += 1
            server.open_max = max(server.open_max, server.open_now)
            index = len(server.sessions)
            server.sessions.append([])
        try:
            self.session(server, index)
        except OSError:
            pass
        finally:
            with server.lock:
                server.open_now -= 1

    def reply(self, text):
        self.wfile.write(text.encode() + b"\r\n")
        self.wfile.flush()

    def session(self, server, index):
        self.request.settimeout(30)
        self.reply("220 scripted.test ESMTP")
        while True:
            line = self.rfile.readline(4096)
            if not line:
                return
            command = line.decode("utf-8", "replace").rstrip("\r\n")
            with server.lock:
                server.sessions[index].append(command)
            verb = command.split(" ")[0].upper()
            if verb == "EHLO":
                extensions = ["PIPELINING", "8BITMIME"]
                if server.starttls:
                    extensions.append("STARTTLS")
                self.reply("\r\n".join(["250-scripted.test"] + ["250-" + e for e in extensions[:-1]]
                                       + ["250 " + extensions[-1]]))
            elif verb == "STARTTLS":
                self.reply("220 2.0.0 go ahead")
                # Not a ServerHello: the client's handshake must fail.
                self.wfile.write(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
                self.wfile.flush()
                return
            elif verb in ("MAIL", "RCPT", "RSET", "NOOP"):
                self.reply("250 2.0.0 ok")
            elif verb == "DATA":
                self.reply("354 go ahead")
                data = b""
                while True:
                    chunk = self.rfile.readline(65536)
                    if not chunk or chunk == b".\r\n":
                        break
                    data += chunk
                if server.hold_s:
                    time.sleep(server.hold_s)
                with server.lock:
                    server.messages.append((index, data))
                self.reply("250 2.0.0 queued")
            elif verb == "QUIT":
                self.reply("221 2.0.0 bye")
                return
            else:
                self.reply("502 5.5.2 what?")


def queue_shard(reply):
    """The shard that spooled a message, from '250 2.0.0 Ok: queued as <id>'."""
    queue_id = reply.decode().rsplit(" ", 1)[-1].strip("<>")
    return int(queue_id, 16) >> 56


class RelayLimitsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.require_io_uring()
        for tool in (test_relay.DNSMASQ, test_relay.SINK):
            if not os.path.exists(tool):
                raise unittest.SkipTest("missing " + tool)
        test_relay.RECORDS[:] = RECORDS
        cls.dns = test_relay.Dns()
        cls.port, = harness.free_ports(1)  # The remote MX port on 127.0.0.21 ...

    @classmethod
    def tearDownClass(cls):
        cls.dns.stop()

    def relay(self, more_relay="", cores=2):
        port, = harness.free_ports(1)
        extra = ("\n[dns]\nresolvers = [\"127.0.0.1:%d\"]\ntimeout_ms = 500\n"
                 "\n[relay]\nport = %d\nretry_schedule_s = [1]\nscan_interval_ms = 100\n"
                 "connect_timeout_ms = 2000\n%s" % (self.dns.port, self.port, more_relay))
        d = harness.Daemon(config_text=smtp_config(port, trusted=("127.0.0.1/32",), extra=extra,
                                                   cores=cores), wait_ports=[port])
        d.port = port
        d.start()
        self.addCleanup(self.finish, d)
        return d

    def finish(self, d):
        code = d.stop() if d.process.poll() is None else d.process.returncode
        log = d.log()
        d.__exit__(None, None, None)
        self.assertEqual(code, 0, "ringpostd exit code:\n" + log[-4000:])

    def scripted(self, address, **options):
        server = ScriptedMx(address, self.port, **options)
        self.addCleanup(server.close)
        return server

    def sink(self, address, options=()):
        s = test_relay.Sink(address, self.port, options)
        self.addCleanup(s.close)
        return s

    def send_one(self, d, rcpt, subject, body="Hello.\r\n"):
        """One message on its own connection; returns the shard that spooled it."""
        message = ("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\n\r\n%s" % (DEMO, rcpt, subject, body))
        with smtplib.SMTP("127.0.0.1", d.port, timeout=30) as client:
            client.ehlo("test.example")
            self.assertEqual(client.mail(DEMO)[0], 250)
            self.assertEqual(client.rcpt(rcpt)[0], 250)
            code, reply = client.data(message.encode("utf-8"))
            self.assertEqual(code, 250, reply)
        return queue_shard(reply)

    def send_on_both_shards(self, d, rcpt, count):
        """`count` messages on separate connections, until both shards spooled some
        (SO_REUSEPORT spreads connections; bounded)."""
        shards = []
        while len(shards) < count or len(set(shards)) < 2:
            self.assertLess(len(shards), count + 40, "every connection went to one shard")
            shards.append(self.send_one(d, rcpt, "limit %d" % len(shards)))
        return len(shards)

    def limit_run(self, limit):
        mx = self.scripted("127.0.0.21", hold_s=0.3)
        d = self.relay("deliveries_per_destination_max = %d\n" % limit)
        sent = self.send_on_both_shards(d, "u@held.test", 8)
        self.assertTrue(wait_for(lambda: len(mx.messages) >= sent, timeout=60),
                        "%d of %d delivered\n%s" % (len(mx.messages), sent, d.log()[-3000:]))
        return mx, d

    # Proves the per-destination limit holds over all shards: with a limit of 1 and mail
    # for one domain spooled on both shards, the destination never sees two connections at
    # once (a per-shard limit would open one per shard); every message still arrives.
    def test_limit_over_all_shards(self):
        mx, d = self.limit_run(1)
        self.assertEqual(mx.open_max, 1, d.log()[-3000:])

    # Proves the test above can see concurrency: with a limit of 2 the same load opens two
    # connections at once.
    def test_limit_two_is_reached(self):
        mx, d = self.limit_run(2)
        self.assertEqual(mx.open_max, 2, d.log()[-3000:])

    # Proves connection reuse: messages to one domain that arrive one after another (each
    # queued only after the previous was delivered) share connections, which stay open
    # while idle; each shard opens at most one, and ends it with QUIT at the daemon's stop.
    def test_idle_connection_reused(self):
        mx = self.scripted("127.0.0.25")
        d = self.relay("connection_idle_ms = 30000\n")
        for i in range(6):
            self.send_one(d, "r@reuse.test", "reuse %d" % i)
            self.assertTrue(wait_for(lambda: len(mx.messages) > i, timeout=20), d.log()[-3000:])
        self.assertLessEqual(mx.connections, 2, mx.sessions)
        # The MX holds the 6th message before the relay has read its 250: stop only once
        # every delivery is logged, so each connection is idle (a transaction cut by the stop
        # ends without QUIT, and that is not what this test is about).
        self.assertTrue(wait_for(lambda: d.log().count("status=sent") >= 6, timeout=20),
                        d.log()[-3000:])
        self.assertEqual(d.stop(), 0)
        self.assertTrue(wait_for(lambda: mx.open_now == 0, timeout=10))
        for commands in mx.sessions:
            self.assertEqual(commands[-1], "QUIT", commands)
        self.assertIn("jobs on a reused idle connection", d.log())

    # Proves the room rule: with one delivery slot (one shard), an idle connection to one
    # domain (kept up to 60 s) is closed with QUIT as soon as mail for another domain needs
    # the slot, and that mail goes out at once, long before the idle time ends.
    def test_idle_connection_closed_for_another_domain(self):
        first = self.scripted("127.0.0.25")
        second = self.scripted("127.0.0.21")
        d = self.relay("connection_idle_ms = 60000\ndeliveries_per_shard_max = 1\n", cores=1)
        self.send_one(d, "r@reuse.test", "first domain")
        self.assertTrue(wait_for(lambda: len(first.messages) == 1, timeout=20), d.log()[-3000:])
        self.assertEqual(first.open_now, 1)  # Idle, kept for reuse.
        self.send_one(d, "h@held.test", "second domain")
        # Within 20 s: without the room rule the slot frees only after the 60 s idle time.
        self.assertTrue(wait_for(lambda: len(second.messages) == 1, timeout=20), d.log()[-3000:])
        self.assertTrue(wait_for(lambda: first.open_now == 0, timeout=10))
        self.assertEqual(first.sessions[0][-1], "QUIT", first.sessions)
        self.assertEqual(d.stop(), 0)
        self.assertIn("1 idle connections closed for room", d.log())

    # Proves opportunistic TLS (tls = "may", RFC 7435): the destination offers STARTTLS but
    # answers the handshake with garbage; the relay connects again without STARTTLS and
    # delivers in clear text.
    def test_may_falls_back_to_plaintext_after_failed_handshake(self):
        mx = self.scripted("127.0.0.22", starttls="garbage")
        d = self.relay('tls = "may"\n')
        self.send_one(d, "x@badtls.test", "tls fails")
        self.assertTrue(wait_for(lambda: len(mx.messages) >= 1, timeout=30), d.log()[-3000:])
        self.assertIn("TLS handshake with mx.badtls.test[127.0.0.22] for badtls.test failed",
                      d.log())
        index, data = mx.messages[0]
        self.assertNotIn("STARTTLS", mx.sessions[index])
        self.assertIn("STARTTLS", mx.sessions[0])
        self.assertIn(b"Subject: tls fails", data)
        self.assertTrue(d.wait_log("status=sent", timeout=10), d.log()[-3000:])

    # Proves BODY=8BITMIME only where needed (RFC 6152): a 7-bit message is sent without
    # it, an 8-bit one (also one whose 8-bit byte is past the first 64 KiB) with it; and that
    # a body the store saw to be 7-bit is not read ahead of MAIL to find out (body_7bit),
    # while one whose first 8-bit byte is late still is (so the counter counts).
    def test_body_8bitmime_declared_only_for_8bit(self):
        sink = self.sink("127.0.0.24")
        d = self.relay()
        read_ahead = r"(\d+) body pieces read ahead"
        self.send_one(d, "a@seven.test", "seven", body="plain ascii\r\n")
        sink.wait_messages(1)
        ascii_lines = "".join("line %05d of ascii text\r\n" % i for i in range(8000))
        self.send_one(d, "d@seven.test", "big seven", body=ascii_lines)  # Several pieces.
        sink.wait_messages(2, timeout=30)
        self.assertEqual(d.stop(), 0)
        self.assertEqual([int(x) for x in re.findall(read_ahead, d.log())], [0, 0], d.log()[-3000:])
        d.start()
        self.send_one(d, "b@seven.test", "eight", body="caf\u00e9\r\n")
        sink.wait_messages(3)
        late = ascii_lines + "na\u00efve\r\n"
        self.send_one(d, "c@seven.test", "late eight", body=late)
        dumps = sink.wait_messages(4, timeout=30)
        self.assertEqual(len(dumps), 4, d.log()[-3000:])
        self.assertEqual(d.stop(), 0)
        self.assertGreater(sum(int(x) for x in re.findall(read_ahead, d.log())[-2:]), 0,
                           d.log()[-3000:])
        args = {}
        for dump in dumps:
            mail_args = [line for line in dump.split(b"\n") if line.startswith(b"X-Mail-Args: ")][0]
            args[test_relay.envelope(dump)[1][0]] = mail_args
        self.assertNotIn(b"BODY=8BITMIME", args[b"<a@seven.test>"])
        self.assertNotIn(b"BODY=8BITMIME", args[b"<d@seven.test>"])
        self.assertIn(b"BODY=8BITMIME", args[b"<b@seven.test>"])
        self.assertIn(b"BODY=8BITMIME", args[b"<c@seven.test>"])

    # Proves RFC 6152 3 for a destination without 8BITMIME (smtp-sink -8): a 7-bit message
    # is delivered; an 8-bit one is returned to its sender (a DSN with 5.6.3), not sent.
    def test_8bit_to_server_without_8bitmime_bounces(self):
        sink = self.sink("127.0.0.23", ["-8"])
        d = self.relay()
        self.send_one(d, "a@eight.test", "seven ok", body="plain\r\n")
        self.send_one(d, "b@eight.test", "eight bounces", body="gr\u00fc\u00dfe\r\n")
        inbox = wait_mailbox(d, DEMO, 1, timeout=30)
        self.assertEqual(len(inbox), 1, d.log()[-3000:])
        dsn = list(inbox.values())[0]
        self.assertIn(b"Status: 5.6.3", dsn)
        self.assertIn(b"b@eight.test", dsn)
        dumps = sink.wait_messages(1)
        self.assertEqual([test_relay.envelope(m)[1] for m in dumps], [[b"<a@eight.test>"]])


if __name__ == "__main__":
    unittest.main(verbosity=2)
