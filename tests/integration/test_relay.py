"""tests/integration/test_relay.py: outbound relay against real parts (issue 6).

A real DNS server (dnsmasq, on 127.0.0.1, started here with the records each case needs;
never the machine's resolver) and real destination MTAs (Postfix's smtp-sink) on other
loopback addresses (127.0.0.2 ...), all on one free port that the daemon's [relay] port
names. Mail comes in from a trusted client on the MX listener. Every wait is bounded.
"""

import glob
import os
import shutil
import signal
import smtplib
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from smtp_util import smtp_config, wait_for, wait_mailbox  # noqa: E402

DEMO = "demo@example.test"
DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"

# name -> dnsmasq options. Sinks listen on 127.0.0.2 (good), .5 (550), .4 (4xx then ok);
# .3, .6, .7 have nobody listening until a test starts one.
RECORDS = [
    "--local=/test/",                                   # Anything else in .test: NXDOMAIN.
    "--mx-host=remote.test,mx1.remote.test,10",
    "--host-record=mx1.remote.test,127.0.0.2",
    "--mx-host=two.test,bad.two.test,10",
    "--mx-host=two.test,good.two.test,20",
    "--host-record=bad.two.test,127.0.0.3",
    "--host-record=good.two.test,127.0.0.2",
    "--mx-host=reject.test,mx.reject.test,10",
    "--host-record=mx.reject.test,127.0.0.5",
    "--mx-host=soft.test,mx.soft.test,10",
    "--host-record=mx.soft.test,127.0.0.4",
    "--dns-rr=nullmx.test,15,000000",                   # RFC 7505: MX 0 "."
    "--mx-host=down.test,mx.down.test,10",
    "--host-record=mx.down.test,127.0.0.6",
    "--mx-host=later.test,mx.later.test,10",
    "--host-record=mx.later.test,127.0.0.7",
    "--host-record=implicit.test,127.0.0.2",            # No MX: the domain itself.
    "--mx-host=loop.test,mail.example.test,10",         # Our own hostname: a loop.
]


def dns_query(port, name, qtype=15):
    """One UDP query to the test's DNS server: True once it answers."""
    packet = struct.pack(">HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        packet += bytes([len(label)]) + label.encode()
    packet += b"\0" + struct.pack(">HH", qtype, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        try:
            s.sendto(packet, ("127.0.0.1", port))
            data, _ = s.recvfrom(4096)
            return data[:2] == b"\x42\x42"
        except OSError:
            return False


class Dns:
    """dnsmasq with RECORDS. `ttl`: the TTL of its answers (dnsmasq's default is 0, which
    nothing may cache; real MX records have minutes to days)."""

    def __init__(self, ttl=0):
        self.port, = harness.free_ports(1)
        self.process = subprocess.Popen(
            [DNSMASQ, "--no-daemon", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
             "--port=%d" % self.port, "--listen-address=127.0.0.1", "--bind-interfaces",
             "--pid-file=", "--user=root", "--local-ttl=%d" % ttl] + RECORDS,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_for(lambda: dns_query(self.port, "remote.test"), timeout=10):
            self.stop()
            raise RuntimeError("dnsmasq did not answer")

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


class Sink:
    """smtp-sink on address:port, dumping each transaction to a file in its folder."""

    def __init__(self, address, port, options=()):
        self.address, self.port = address, port
        self.folder = tempfile.mkdtemp(prefix="ringpost-sink-")
        os.chmod(self.folder, 0o777)
        self.options = list(options)
        self.process = None
        self.start()

    def start(self, options=None):
        if options is not None:
            self.options = list(options)
        self.process = subprocess.Popen(
            [SINK, "-u", "nobody", "-h", "sink.test", "-d", os.path.join(self.folder, "m")]
            + self.options + ["%s:%d" % (self.address, self.port), "64"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def up():
            try:
                socket.create_connection((self.address, self.port), timeout=0.5).close()
                return True
            except OSError:
                return False
        if not wait_for(up, timeout=10):
            raise RuntimeError("smtp-sink did not listen on %s:%d" % (self.address, self.port))

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def messages(self):
        out = []
        for path in sorted(glob.glob(os.path.join(self.folder, "m*"))):
            try:
                with open(path, "rb") as f:
                    out.append(f.read())
            except FileNotFoundError:
                # smtp-sink removes the dump of a transaction whose client went away
                # (e.g. a daemon killed mid-transaction): not a message.
                continue
        return out

    def wait_messages(self, count, timeout=20.0):
        """At least `count` dumps, each complete: smtp-sink writes a dump while the
        transaction runs, so a dump counts once it names a recipient and has not grown
        since the previous look."""
        last = {}

        def ready():
            nonlocal last
            messages = self.messages()
            sizes = {i: len(m) for i, m in enumerate(messages)}
            stable = sizes == last and all(b"X-Rcpt-Args" in m for m in messages)
            last = sizes
            return len(messages) >= count and stable
        wait_for(ready, timeout=timeout, step=0.1)
        return self.messages()

    def close(self):
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def envelope(dump):
    """(sender, [recipients], message bytes) of an smtp-sink dump."""
    head, _, rest = dump.partition(b"\n\n") if b"X-Rcpt-Args" in dump[:2000] else (b"", b"", dump)
    sender, rcpts = None, []
    lines = dump.split(b"\n")
    body_at = 0
    for i, line in enumerate(lines):
        if line.startswith(b"X-Mail-Args: "):
            sender = line[len(b"X-Mail-Args: "):].split(b" ")[0]
        elif line.startswith(b"X-Rcpt-Args: "):
            rcpts.append(line[len(b"X-Rcpt-Args: "):].split(b" ")[0])
        elif not line.startswith(b"X-"):
            body_at = i
            break
    return sender, rcpts, b"\n".join(lines[body_at:])


dns_server = None
sink_port = None


def setUpModule():
    global dns_server, sink_port
    harness.require_io_uring()
    for tool in (DNSMASQ, SINK):
        if not os.path.exists(tool):
            print("missing %s: skipping" % tool, file=sys.stderr)
            sys.exit(harness.SKIP)
    dns_server = Dns()
    sink_port, = harness.free_ports(1)


def tearDownModule():
    if dns_server:
        dns_server.stop()


class RelayTest(unittest.TestCase):
    def daemon(self, lifetime_s=3600, retry="[1]", trusted=("127.0.0.1/32",), more="",
               more_ports=()):
        port, = harness.free_ports(1)
        extra = ("\n[dns]\nresolvers = [\"127.0.0.1:%d\"]\ntimeout_ms = 500\nattempts = 2\n"
                 "\n[relay]\nport = %d\nretry_schedule_s = %s\nmax_lifetime_s = %d\n"
                 "scan_interval_ms = 100\nconnect_timeout_ms = 2000\n"
                 % (dns_server.port, sink_port, retry, lifetime_s)) + more
        d = harness.Daemon(config_text=smtp_config(port, trusted=trusted, extra=extra),
                           wait_ports=[port] + list(more_ports))
        d.port = port
        d.start()
        self.addCleanup(self.finish, d)
        return d

    def finish(self, d):
        if d.process.poll() is None:
            code = d.stop()
        else:
            code = d.process.returncode
            d.log_file.close()
        log = d.log()
        d.__exit__(None, None, None)
        self.assertEqual(code, 0, "ringpostd exit code:\n" + log[-6000:])

    def sink(self, address, options=()):
        s = Sink(address, sink_port, options)
        self.addCleanup(s.close)
        return s

    def send(self, d, sender, rcpts, subject="relay test", body="Hello.\r\n.leading dot\r\n"):
        message = ("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\n\r\n%s"
                   % (sender or "nobody@example.test", rcpts[0], subject, body))
        with smtplib.SMTP("127.0.0.1", d.port, timeout=30) as client:
            refused = client.sendmail(sender, rcpts, message.encode())
            self.assertEqual(refused, {})
        return message.encode()

    # Proves the basic relay: two recipients of one domain arrive at the sink in ONE
    # transaction, with the envelope and the body intact (dot-stuffing undone by the sink).
    def test_two_recipients_one_transaction(self):
        sink = self.sink("127.0.0.2")
        d = self.daemon()
        sent = self.send(d, DEMO, ["a@remote.test", "b@remote.test"])
        dumps = sink.wait_messages(1)
        self.assertEqual(len(dumps), 1, d.log())
        sender, rcpts, data = envelope(dumps[0])
        self.assertEqual(sender, b"<demo@example.test>")
        self.assertEqual(sorted(rcpts), [b"<a@remote.test>", b"<b@remote.test>"])
        self.assertIn(b"Received: ", data)
        self.assertIn(sent.replace(b"\r\n", b"\n").rstrip(b"\n"), data.replace(b"\r\n", b"\n"))
        self.assertTrue(d.wait_log("status=sent", timeout=10))
        time.sleep(0.3)
        self.assertEqual(len(sink.messages()), 1)

    # Proves the streamed body: a 3 MB message (stored in several pieces) whose lines start
    # with dots arrives byte-exact (dot-stuffing done on the fly, undone by the sink).
    def test_large_body_streamed(self):
        sink = self.sink("127.0.0.2")
        d = self.daemon()
        body = "".join(".line %06d %s\r\n" % (i, "x" * (i % 90)) for i in range(60000))
        sent = self.send(d, DEMO, ["big@remote.test"], subject="big", body=body)
        self.assertGreater(len(sent), 3_000_000)
        dumps = sink.wait_messages(1, timeout=60)
        self.assertEqual(len(dumps), 1, d.log())
        data = envelope(dumps[0])[2].replace(b"\r\n", b"\n")
        self.assertIn(sent.replace(b"\r\n", b"\n").rstrip(b"\n"), data)
        self.assertTrue(d.wait_log("status=sent", timeout=10))

    # Proves relaying for an authenticated client (submission, STARTTLS, AUTH) that is not
    # in a trusted network; the same client without AUTH may not relay (no open relay).
    def test_authenticated_submission_relays(self):
        import ssl
        sink = self.sink("127.0.0.2")
        sub, = harness.free_ports(1)
        more = ('\n[tls]\ncert_file = "tls/cert.pem"\nkey_file = "tls/key.pem"\nself_signed = true\n'
                '\n[[smtp.listener]]\naddress = "127.0.0.1:%d"\nkind = "submission"\n' % sub)
        d = self.daemon(trusted=(), more=more, more_ports=[sub])
        with smtplib.SMTP("127.0.0.1", d.port, timeout=30) as client:
            with self.assertRaises(smtplib.SMTPRecipientsRefused):
                client.sendmail(DEMO, ["far@remote.test"], b"Subject: x\r\n\r\nx\r\n")
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # The daemon's self-signed certificate.
        message = b"From: <demo@example.test>\r\nSubject: submitted\r\n\r\nfrom an authenticated client\r\n"
        with smtplib.SMTP("127.0.0.1", sub, timeout=30) as client:
            client.starttls(context=context)
            client.login(DEMO, "demo")
            self.assertEqual(client.sendmail(DEMO, ["far@remote.test"], message), {})
        dumps = sink.wait_messages(1)
        self.assertEqual(len(dumps), 1, d.log())
        sender, rcpts, data = envelope(dumps[0])
        self.assertEqual((sender, rcpts), (b"<demo@example.test>", [b"<far@remote.test>"]))
        self.assertIn(b"Received: ", data)
        self.assertIn(b"from an authenticated client", data)

    # Proves MX fallback: the first MX refuses connections, the second accepts; and the
    # implicit MX (no MX record: the domain's own address).
    def test_first_mx_refuses_and_implicit_mx(self):
        sink = self.sink("127.0.0.2")
        d = self.daemon()
        self.send(d, DEMO, ["x@two.test"])
        self.send(d, DEMO, ["y@implicit.test"])
        dumps = sink.wait_messages(2)
        rcpts = sorted(envelope(m)[1][0] for m in dumps)
        self.assertEqual(rcpts, [b"<x@two.test>", b"<y@implicit.test>"], d.log())
        self.assertIn("bad.two.test[127.0.0.3]", d.log())

    # Proves retries: a 4xx on RCPT defers; once the destination accepts, the retry delivers.
    def test_4xx_then_delivered(self):
        sink = self.sink("127.0.0.4", ["-r", "RCPT"])
        d = self.daemon()
        self.send(d, DEMO, ["later@soft.test"])
        self.assertTrue(d.wait_log("status=deferred", timeout=15), d.log())
        self.assertEqual(sink.messages(), [])
        sink.stop()
        sink.start([])
        dumps = sink.wait_messages(1)
        self.assertEqual(len(dumps), 1, d.log())
        self.assertEqual(envelope(dumps[0])[1], [b"<later@soft.test>"])

    # Proves bounces: a 550 5.1.1 from the destination gives an RFC 3464 DSN in the local
    # sender's INBOX, with the remote reply and the original header.
    def test_550_gives_dsn(self):
        self.sink("127.0.0.5", ["-f", "RCPT", "-B", "550 5.1.1 User unknown"])
        d = self.daemon()
        self.send(d, DEMO, ["nobody@reject.test"], subject="will bounce")
        inbox = wait_mailbox(d, DEMO, 1)
        self.assertEqual(len(inbox), 1, d.log())
        dsn = list(inbox.values())[0]
        self.assertIn(b"multipart/report; report-type=delivery-status", dsn)
        self.assertIn(b"Final-Recipient: rfc822; nobody@reject.test", dsn)
        self.assertIn(b"550 5.1.1 User unknown", dsn)
        self.assertIn(b"Status: 5.1.1", dsn)
        self.assertIn(b"Subject: will bounce", dsn)
        self.assertNotIn(b".leading dot", dsn)  # Headers only, not the body.

    # Proves that the bounce to a remote sender is relayed with the null sender.
    def test_dsn_to_remote_sender_is_relayed(self):
        self.sink("127.0.0.5", ["-f", "RCPT", "-B", "550 5.1.1 User unknown"])
        home = self.sink("127.0.0.2")
        d = self.daemon()
        self.send(d, "someone@remote.test", ["nobody@reject.test"], subject="remote bounce")
        dumps = home.wait_messages(1)
        self.assertEqual(len(dumps), 1, d.log())
        sender, rcpts, data = envelope(dumps[0])
        self.assertEqual((sender, rcpts), (b"<>", [b"<someone@remote.test>"]))
        self.assertIn(b"report-type=delivery-status", data)
        self.assertIn(b"Subject: remote bounce", data)

    # Proves that a null sender's mail is never bounced (no bounce loops).
    def test_null_sender_not_bounced(self):
        self.sink("127.0.0.5", ["-f", "RCPT", "-B", "550 5.1.1 User unknown"])
        d = self.daemon()
        self.send(d, "", ["nobody@reject.test"])
        self.assertTrue(d.wait_log("bounce of a bounce (null sender) dropped", timeout=15), d.log())
        self.assertEqual(wait_mailbox(d, DEMO, 1, timeout=1), {})

    # Proves DNS failures: null MX (RFC 7505), NXDOMAIN and an MX that is us bounce at once.
    def test_null_mx_nxdomain_and_loop_bounce(self):
        d = self.daemon()
        self.send(d, DEMO, ["a@nullmx.test"])
        self.send(d, DEMO, ["b@nxdomain.test"])
        self.send(d, DEMO, ["c@loop.test"])
        inbox = wait_mailbox(d, DEMO, 3)
        self.assertEqual(len(inbox), 3, d.log())
        text = b"\n".join(inbox.values())
        self.assertIn(b"5.1.10", text)
        self.assertIn(b"NXDOMAIN", text)
        self.assertIn(b"5.4.6", text)

    # Proves expiry: a destination unreachable for longer than max_lifetime_s bounces.
    def test_unreachable_expires(self):
        d = self.daemon(lifetime_s=2)
        self.send(d, DEMO, ["gone@down.test"])
        inbox = wait_mailbox(d, DEMO, 1, timeout=30)
        self.assertEqual(len(inbox), 1, d.log())
        dsn = list(inbox.values())[0]
        self.assertIn(b"gone@down.test", dsn)
        self.assertIn(b"gave up", dsn)
        self.assertIn("status=deferred", d.log())

    # Proves durability of the queue: mail queued for an unreachable destination survives
    # kill -9 and is delivered exactly once after the restart.
    def test_restart_delivers_exactly_once(self):
        d = self.daemon(retry="[1]")
        count = 30
        for i in range(count):
            self.send(d, DEMO, ["r%d@later.test" % i], subject="queued %d" % i)
        self.assertTrue(d.wait_log("status=deferred", timeout=15), d.log())
        d.process.kill()
        d.process.wait(timeout=10)
        d.log_file.close()
        time.sleep(1.5)  # Every recipient is due again at the first scan after the restart.
        sink = self.sink("127.0.0.7")
        d.start()
        dumps = sink.wait_messages(count, timeout=30)
        time.sleep(1.5)  # Past another retry step: nothing more may arrive.
        dumps = sink.messages()
        subjects = sorted(int(m.split(b"Subject: queued ")[1].split(b"\r\n")[0].split(b"\n")[0])
                          for m in dumps)
        self.assertEqual(subjects, list(range(count)), d.log())
        # Connection reuse: 30 messages over deliveries_per_destination_max (4) connections
        # for both shards together, plus the few that move between shards for fair shares,
        # as all were due at the first scan after restart.
        connections = d.log().count("relay: connected to mx.later.test")
        self.assertGreaterEqual(connections, 1)
        self.assertLessEqual(connections, 8, d.log())

    # Proves the queue command: list (while running), show, retry, delete and flush (with
    # the daemon stopped); a flushed message goes out at the next start despite a 1 h retry.
    def test_queue_command(self):
        from smtp_util import ringpost
        d = self.daemon(retry="[3600]")
        self.send(d, DEMO, ["keep@later.test"], subject="flush me")
        self.send(d, DEMO, ["drop@down.test"], subject="delete me")
        self.assertTrue(wait_for(lambda: d.log().count("status=deferred") >= 2, timeout=15), d.log())
        listing = ringpost(d, "queue", "list").decode()
        self.assertIn("2 queued messages", listing)
        self.assertIn("deferred", listing)
        self.assertIn("<keep@later.test>", listing)
        ids = {line.split()[0]: line for line in listing.splitlines() if "from=<" in line}
        self.assertEqual(len(ids), 2)
        drop = [i for i in ids if "drop@down.test" in listing.split(i)[1].split("\n", 2)[1]][0]
        shown = ringpost(d, "queue", "show", drop)
        self.assertIn(b"Subject: delete me", shown)
        self.assertEqual(d.stop(), 0)
        d.log_file.close()
        self.assertIn(b"1 messages deleted", ringpost(d, "queue", "delete", drop))
        self.assertIn(b"1 messages due now", ringpost(d, "queue", "flush"))
        listing = ringpost(d, "queue", "list").decode()
        self.assertIn("1 queued messages", listing)
        self.assertNotIn("drop@down.test", listing)
        sink = self.sink("127.0.0.7")
        d.start()
        dumps = sink.wait_messages(1)
        self.assertEqual(len(dumps), 1, d.log())
        self.assertIn(b"Subject: flush me", dumps[0])
        self.assertTrue(wait_for(lambda: b"0 queued messages" in ringpost(d, "queue", "list"), timeout=10))


if __name__ == "__main__":
    unittest.main(verbosity=2)
