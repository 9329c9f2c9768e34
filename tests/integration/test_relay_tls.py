"""tests/integration/test_relay_tls.py: outbound STARTTLS and the resolv.conf default (issue 6).

The destination with TLS is a second, real ringpostd on 127.0.0.8 (an MX listener offering
STARTTLS with its self-signed certificate, local domain tls.test); the destination without
TLS is Postfix's smtp-sink on 127.0.0.9. A real dnsmasq on 127.0.0.1 answers the MX lookups
(never the machine's resolver). Every wait is bounded.
"""

import os
import shutil
import socket
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from smtp_util import smtp_config, wait_for, wait_mailbox  # noqa: E402
import test_relay  # noqa: E402

RECORDS = [
    "--local=/test/",
    "--mx-host=tls.test,mx.tls.test,10",
    "--host-record=mx.tls.test,127.0.0.8",
    "--mx-host=plain.test,mx.plain.test,10",
    "--host-record=mx.plain.test,127.0.0.9",
]
BOB = "bob@tls.test"
DNS53 = "127.0.0.153"


def dns_query(address, name):
    """One UDP MX query to address:53: True once it answers."""
    import struct
    packet = struct.pack(">HHHHHH", 0x4243, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        packet += bytes([len(label)]) + label.encode()
    packet += b"\0" + struct.pack(">HH", 15, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        try:
            s.sendto(packet, (address, 53))
            return s.recvfrom(4096)[0][:2] == b"\x42\x43"
        except OSError:
            return False


def listening(address, port):
    try:
        socket.create_connection((address, port), timeout=0.5).close()
        return True
    except OSError:
        return False


class RelayTlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.require_io_uring()
        for tool in (test_relay.DNSMASQ, test_relay.SINK):
            if not os.path.exists(tool):
                raise unittest.SkipTest("missing " + tool)
        test_relay.RECORDS[:] = RECORDS
        cls.dns = test_relay.Dns()
        cls.port, = harness.free_ports(1)  # The remote MX port, on 127.0.0.8 and .9.

    @classmethod
    def tearDownClass(cls):
        cls.dns.stop()

    def destination(self, tls_files=None):
        """A ringpostd for tls.test on 127.0.0.8 with STARTTLS (self-signed, or the given
        (cert, key) files)."""
        text = harness.BASE_CONFIG.format(cores=1, sessions=64, per_ip=0, grace_ms=2000,
                                          log_level="info")
        text = text.replace('hostname = "mail.example.test"', 'hostname = "mx.tls.test"')
        tls = ('cert_file = "tls/cert.pem"\nkey_file = "tls/key.pem"\nself_signed = true\n'
               if tls_files is None else 'cert_file = "%s"\nkey_file = "%s"\n' % tls_files)
        text += ('\n[[domain]]\nname = "tls.test"\n\n[[user]]\naddress = "%s"\npassword = "x"\n'
                 '\n[tls]\n%s\n[[smtp.listener]]\naddress = "127.0.0.8:%d"\nkind = "mx"\n'
                 % (BOB, tls, self.port))
        d = harness.Daemon(config_text=text)
        d.start()
        self.addCleanup(self.finish, d)
        self.assertTrue(wait_for(lambda: listening("127.0.0.8", self.port), timeout=15), d.log())
        return d

    def relay(self, more_relay="", dns=None):
        port, = harness.free_ports(1)
        dns_table = dns if dns is not None else (
            "\n[dns]\nresolvers = [\"127.0.0.1:%d\"]\ntimeout_ms = 500\n" % self.dns.port)
        extra = (dns_table + "\n[relay]\nport = %d\nretry_schedule_s = [1]\nscan_interval_ms = 100\n"
                 "connect_timeout_ms = 2000\n%s" % (self.port, more_relay))
        d = harness.Daemon(config_text=smtp_config(port, trusted=("127.0.0.1/32",), extra=extra),
                           wait_ports=[port])
        d.port = port
        d.start()
        self.addCleanup(self.finish, d)
        return d

    def finish(self, d):
        code = d.stop() if d.process.poll() is None else d.process.returncode
        log = d.log()
        d.__exit__(None, None, None)
        self.assertEqual(code, 0, "ringpostd exit code:\n" + log[-4000:])

    def sink(self):
        s = test_relay.Sink("127.0.0.9", self.port)
        self.addCleanup(s.close)
        return s

    def send(self, d, rcpt, subject):
        import smtplib
        message = ("From: <demo@example.test>\r\nTo: <%s>\r\nSubject: %s\r\n\r\nover TLS?\r\n"
                   % (rcpt, subject)).encode()
        with smtplib.SMTP("127.0.0.1", d.port, timeout=30) as client:
            self.assertEqual(client.sendmail("demo@example.test", [rcpt], message), {})

    # Proves opportunistic STARTTLS: a destination offering STARTTLS gets the mail over TLS
    # (its own Received header says ESMTPS, our log names the TLS version), and one without
    # STARTTLS (smtp-sink) still gets it in clear.
    def test_starttls_when_offered_plain_otherwise(self):
        remote = self.destination()
        sink = self.sink()
        d = self.relay()
        self.send(d, BOB, "tls please")
        self.send(d, "x@plain.test", "plain please")
        inbox = wait_mailbox(remote, BOB, 1, timeout=30)
        self.assertEqual(len(inbox), 1, d.log() + remote.log())
        message = list(inbox.values())[0]
        first = message.split(b"\r\n\t")[0] + message.split(b"\r\n\t")[1]
        self.assertIn(b"by mx.tls.test (ringpost) with ESMTPS", first, message[:600])
        self.assertIn(b"Subject: tls please", message)
        self.assertIn("relay: TLS TLSv1.3", d.log())
        dumps = sink.wait_messages(1)
        self.assertEqual(len(dumps), 1, d.log())
        self.assertIn(b"Subject: plain please", dumps[0])
        self.assertEqual(test_relay.envelope(dumps[0])[1], [b"<x@plain.test>"])

    # Proves tls = "verify": a certificate that does not verify (self-signed) and a server
    # without STARTTLS both defer the mail; nothing goes out in clear.
    def test_verify_never_falls_back_to_plaintext(self):
        remote = self.destination()
        sink = self.sink()
        d = self.relay('tls = "verify"\n')
        self.send(d, BOB, "verified only")
        self.send(d, "y@plain.test", "verified only")
        self.assertTrue(wait_for(lambda: d.log().count("status=deferred") >= 2, timeout=20), d.log())
        self.assertIn("TLS handshake with mx.tls.test[127.0.0.8] for tls.test failed", d.log())
        self.assertIn("STARTTLS is required but not offered", d.log())
        self.assertEqual(wait_mailbox(remote, BOB, 1, timeout=1), {})
        self.assertEqual(sink.messages(), [])
        self.assertNotIn("status=sent", d.log())

    # Proves tls = "verify" with a CA that signed the MX's certificate for its name: the
    # mail goes out over TLS, verified (chain and host name mx.tls.test).
    def test_verify_with_ca(self):
        import subprocess
        folder = tempfile.mkdtemp(prefix="ringpost-ca-")
        self.addCleanup(shutil.rmtree, folder, True)
        f = lambda name: os.path.join(folder, name)  # noqa: E731

        def openssl(*args):
            subprocess.run(["openssl"] + list(args), check=True, capture_output=True, timeout=60)
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f("ca.key"), "-out", f("ca.pem"), "-days", "2", "-subj", "/CN=ringpost test CA")
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f("mx.key"), "-out", f("mx.csr"), "-subj", "/CN=mx.tls.test")
        with open(f("ext"), "w") as ext:
            ext.write("subjectAltName = DNS:mx.tls.test\nbasicConstraints = CA:FALSE\n")
        openssl("x509", "-req", "-in", f("mx.csr"), "-CA", f("ca.pem"), "-CAkey", f("ca.key"),
                "-CAcreateserial", "-out", f("mx.pem"), "-days", "2", "-extfile", f("ext"))
        remote = self.destination(tls_files=(f("mx.pem"), f("mx.key")))
        d = self.relay('tls = "verify"\ntls_ca_file = "%s"\n' % f("ca.pem"))
        self.send(d, BOB, "verified")
        inbox = wait_mailbox(remote, BOB, 1, timeout=30)
        self.assertEqual(len(inbox), 1, d.log() + remote.log())
        self.assertIn(b"with ESMTPS", list(inbox.values())[0][:400])
        self.assertIn("relay: TLS TLSv1.3", d.log())

    # Proves the [dns] resolvers default: without the key, the nameservers come from
    # [dns] resolv_conf (here the test's own file naming the test's dnsmasq; the default
    # path is /etc/resolv.conf, never used by tests).
    def test_resolvers_from_resolv_conf(self):
        sink = self.sink()
        folder = tempfile.mkdtemp(prefix="ringpost-resolv-")
        path = os.path.join(folder, "resolv.conf")
        with open(path, "w") as f:
            f.write("# test resolver\nsearch example.invalid\noptions ndots:1\n"
                    "nameserver %s\n" % DNS53)
        self.addCleanup(shutil.rmtree, folder, True)
        # resolv.conf has no port syntax: this test's dnsmasq listens on 127.0.0.153:53.
        if not port_free(DNS53, 53):
            self.skipTest("%s:53 is in use" % DNS53)
        dns53 = Dns53()
        self.addCleanup(dns53.stop)
        d = self.relay(dns="\n[dns]\nresolv_conf = \"%s\"\ntimeout_ms = 500\n" % path)
        self.assertTrue(d.wait_log("relay: DNS resolvers from %s: %s:53" % (path, DNS53)), d.log())
        self.send(d, "z@plain.test", "via resolv.conf")
        dumps = sink.wait_messages(1)
        self.assertEqual(len(dumps), 1, d.log())
        self.assertIn(b"Subject: via resolv.conf", dumps[0])


def port_free(address, port):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((address, port))
            return True
        except OSError:
            return False


class Dns53(test_relay.Dns):
    """The test's dnsmasq on 127.0.0.153:53 (resolv.conf has no port syntax)."""

    def __init__(self):
        import subprocess
        self.port = 53
        self.process = subprocess.Popen(
            [test_relay.DNSMASQ, "--no-daemon", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
             "--port=53", "--listen-address=" + DNS53, "--bind-interfaces", "--pid-file=",
             "--user=root"] + RECORDS, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_for(lambda: dns_query(DNS53, "plain.test"), timeout=10):
            self.stop()
            raise RuntimeError("dnsmasq on port 53 did not answer")


if __name__ == "__main__":
    unittest.main(verbosity=2)
