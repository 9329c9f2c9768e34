"""tests/integration/test_tls.py: TLS, AUTH and submission against the real ringpostd (issue 4).

One daemon per test class serves mx (STARTTLS), submission (STARTTLS + AUTH required) and
smtps (implicit TLS) with a certificate signed by a test CA that the test makes with openssl.
Real clients: Python smtplib (starttls, SMTP_SSL), swaks --tls/--tlsc, openssl s_client
-starttls smtp, curl --ssl-reqd. Every wait is bounded.
"""

import base64
import os
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from smtp_util import Raw, ringpost, wait_mailbox  # noqa: E402

DEMO = "demo@example.test"
SCRAM_USER = "erin@example.test"
HOST = "mail.example.test"


def run(args, **kwargs):
    return subprocess.run(args, capture_output=True, timeout=60, check=True, **kwargs)


def make_ca(folder):
    """A test CA: ca.pem / ca.key in `folder`."""
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "2", "-subj", "/CN=ringpost test CA",
         "-keyout", os.path.join(folder, "ca.key"), "-out", os.path.join(folder, "ca.pem")])


def make_cert(folder, name, common_name):
    """A P-256 server certificate for `common_name` (and 127.0.0.1) signed by the test CA."""
    key = os.path.join(folder, name + ".key")
    csr = os.path.join(folder, name + ".csr")
    cert = os.path.join(folder, name + ".pem")
    ext = os.path.join(folder, name + ".ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:%s,IP:127.0.0.1\n" % common_name)
    run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-subj", "/CN=" + common_name, "-keyout", key, "-out", csr])
    run(["openssl", "x509", "-req", "-in", csr, "-CA", os.path.join(folder, "ca.pem"),
         "-CAkey", os.path.join(folder, "ca.key"), "-CAcreateserial", "-days", "2",
         "-extfile", ext, "-out", cert])
    return cert, key


def tls_config(ports, cert, key, extra=""):
    text = harness.BASE_CONFIG.format(cores=2, sessions=1024, per_ip=0, grace_ms=5000,
                                      log_level="info")
    text += "\n[smtp]\ntrusted_networks = []\n"
    for kind, port in zip(("mx", "submission", "smtps"), ports):
        text += '\n[[smtp.listener]]\naddress = "127.0.0.1:%d"\nkind = "%s"\n' % (port, kind)
    text += ('\n[tls]\ncert_file = "%s"\nkey_file = "%s"\nhandshake_timeout_ms = 1500\n'
             % (cert, key))
    text += ("\n[auth]\nfailures_max = 5\nfailure_delay_ms = 20\nfailure_delay_max_ms = 200\n"
             "hash_threads = 2\n")
    return text + extra


def client_context(ca):
    context = ssl.create_default_context(cafile=ca)
    context.check_hostname = True
    return context


def peer_common_name(sock):
    """The CN of the certificate the server presented."""
    der = sock.getpeercert(binary_form=True)
    pem = ssl.DER_cert_to_PEM_cert(der)
    out = subprocess.run(["openssl", "x509", "-noout", "-subject"], input=pem.encode(),
                         capture_output=True, timeout=30, check=True).stdout.decode()
    return out.strip().split("CN", 1)[1].lstrip(" =")


def plain_b64(user, password):
    return base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()


class TlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pki = tempfile.mkdtemp(prefix="ringpost-pki-")
        make_ca(cls.pki)
        cls.ca = os.path.join(cls.pki, "ca.pem")
        cls.cert, cls.key = make_cert(cls.pki, "server", HOST)
        # The daemon reads copies, so the reload test can replace them.
        cls.live_cert = os.path.join(cls.pki, "live.pem")
        cls.live_key = os.path.join(cls.pki, "live.key")
        shutil.copy(cls.cert, cls.live_cert)
        shutil.copy(cls.key, cls.live_key)
        cls.ports = harness.free_ports(3)
        cls.mx, cls.submission, cls.smtps = cls.ports
        cls.d = harness.Daemon(config_text=tls_config(cls.ports, cls.live_cert, cls.live_key),
                               wait_ports=cls.ports)
        cls.d.start()

    @classmethod
    def tearDownClass(cls):
        code = cls.d.stop()
        log = cls.d.log()
        with open(os.environ.get("RP_TLS_LOG", os.devnull), "w") as f:
            f.write(log)
        cls.d.__exit__(None, None, None)
        shutil.rmtree(cls.pki, ignore_errors=True)
        if code != 0:
            raise AssertionError("ringpostd exit code %r\n%s" % (code, log))

    def setUp(self):
        self.assertIsNone(self.d.process.poll(), "ringpostd died:\n" + self.d.log())

    def starttls(self, port, source="127.0.0.1"):
        s = smtplib.SMTP("127.0.0.1", port, timeout=30, source_address=(source, 0))
        s.ehlo(HOST)
        s.starttls(context=client_context(self.ca))
        s.ehlo(HOST)
        return s

    # Proves smtplib STARTTLS on submission: the CA-verified certificate, TLS 1.3, AUTH
    # offered only after TLS, and an authenticated user may relay and deliver locally; the
    # stored message says ESMTPSA.
    def test_smtplib_starttls_submission(self):
        with smtplib.SMTP("127.0.0.1", self.submission, timeout=30) as s:
            s.ehlo(HOST)
            self.assertFalse(s.has_extn("auth"))
            self.assertTrue(s.has_extn("starttls"))
            s.starttls(context=client_context(self.ca))
            self.assertEqual(s.sock.version(), "TLSv1.3")
            s.ehlo(HOST)
            self.assertIn("PLAIN", s.esmtp_features["auth"])
            s.login(DEMO, "demo")
            refused = s.sendmail(DEMO, [DEMO, "someone@remote.test"],
                                 b"Subject: starttls submission\r\n\r\nhello\r\n")
            self.assertEqual(refused, {})
        found = []
        deadline = time.monotonic() + 20
        while not found and time.monotonic() < deadline:
            messages = wait_mailbox(self.d, DEMO, 1)
            found = [m for m in messages.values() if b"Subject: starttls submission" in m]
            time.sleep(0.05)
        self.assertEqual(len(found), 1)
        self.assertIn(b"with ESMTPSA", found[0])

    # Proves implicit TLS on smtps with SMTP_SSL: AUTH LOGIN works, MAIL before AUTH is 530,
    # and a MAIL FROM that is not the user's own address is 553 5.7.1.
    def test_smtp_ssl_policy(self):
        with smtplib.SMTP_SSL("127.0.0.1", self.smtps, timeout=30,
                              context=client_context(self.ca)) as s:
            s.ehlo(HOST)
            code, text = s.mail(DEMO)
            self.assertEqual(code, 530, text)
            s.rset()
            s.user, s.password = DEMO, "demo"
            code, text = s.auth("LOGIN", s.auth_login, initial_response_ok=False)
            self.assertEqual(code, 235, text)
            code, text = s.mail("other@example.test")
            self.assertEqual(code, 553, text)
            self.assertIn(b"5.7.1", text)
            s.rset()
            self.assertEqual(s.sendmail(DEMO, [DEMO], b"Subject: smtps\r\n\r\nx\r\n"), {})

    # Proves AUTH before TLS is refused with 538 5.7.11 and bad base64 gets 501 5.5.2.
    def test_auth_needs_tls_and_base64(self):
        raw = Raw(self.submission)
        self.assertEqual(raw.reply()[0], 220)
        raw.command("EHLO client.test")
        code, lines = raw.command("AUTH PLAIN " + plain_b64(DEMO, "demo"))
        self.assertEqual(code, 538, lines)
        self.assertIn("5.7.11", lines[0])
        raw.close()
        s = self.starttls(self.submission)
        code, text = s.docmd("AUTH", "PLAIN not*base64!")
        self.assertEqual(code, 501, text)
        self.assertIn(b"5.5.2", text)
        code, text = s.docmd("AUTH", "PLAIN")
        self.assertEqual(code, 334, text)
        code, text = s.docmd("*")
        self.assertEqual(code, 501, text)
        s.close()

    # Proves port 25 (mx) with STARTTLS: no relay without AUTH (554), relay after AUTH.
    def test_mx_relay_only_authenticated(self):
        s = self.starttls(self.mx)
        s.mail("x@remote.test")
        code, text = s.rcpt("y@elsewhere.test")
        self.assertEqual(code, 554, text)
        s.rset()
        s.login(DEMO, "demo")
        s.mail(DEMO)
        code, text = s.rcpt("y@elsewhere.test")
        self.assertEqual(code, 250, text)
        s.close()

    # Proves swaks with STARTTLS (--tls) on submission and implicit TLS (--tlsc) on smtps.
    def test_swaks(self):
        if shutil.which("swaks") is None:
            self.skipTest("swaks not installed")
        for flag, port in (("--tls", self.submission), ("--tlsc", self.smtps)):
            done = subprocess.run(
                ["swaks", "--server", "127.0.0.1:%d" % port, flag, "--auth", "PLAIN",
                 "--auth-user", DEMO, "--auth-password", "demo", "--from", DEMO, "--to", DEMO,
                 "--header", "Subject: swaks %s" % flag, "--timeout", "20"],
                capture_output=True, timeout=60)
            out = done.stdout.decode(errors="replace")
            self.assertEqual(done.returncode, 0, out)
            self.assertIn("235 2.7.0", out)
            self.assertIn("250 2.0.0", out)

    # Proves openssl s_client -starttls smtp negotiates TLS 1.2 and TLS 1.3 and sees our
    # certificate, with ChaCha20-Poly1305 by the server's default preference (OpenSSL lists
    # AES-256-GCM first).
    def test_openssl_s_client(self):
        for version in ("-tls1_2", "-tls1_3"):
            done = subprocess.run(
                ["openssl", "s_client", "-starttls", "smtp", "-connect",
                 "127.0.0.1:%d" % self.mx, version, "-CAfile", self.ca, "-servername", HOST,
                 "-ign_eof"],
                input=b"EHLO client.test\r\nQUIT\r\n", capture_output=True, timeout=30)
            out = done.stdout.decode(errors="replace")
            self.assertIn("CN = " + HOST, out)
            self.assertIn("Verify return code: 0 (ok)", out)
            self.assertIn("TLSv1.2" if version == "-tls1_2" else "TLSv1.3", out)
            self.assertIn("250-AUTH PLAIN LOGIN SCRAM-SHA-256", out)
            self.assertIn("ECDHE-ECDSA-CHACHA20-POLY1305" if version == "-tls1_2"
                          else "TLS_CHACHA20_POLY1305_SHA256", out)

    # Proves the key exchange groups ([tls] groups, default X25519, P-256, P-384): openssl
    # s_client preferring X25519 or offering only P-256 completes TLS 1.3 and TLS 1.2 with that
    # group, and a client offering only a group not configured (P-521) fails the handshake
    # (no cipher negotiated) while the daemon lives and the next client succeeds. (TLS 1.2
    # lists X25519:P-256: there the groups also name the curves of the ECDSA certificate.)
    def test_groups(self):
        cases = [("-tls1_3", "X25519", "Server Temp Key: X25519"),
                 ("-tls1_3", "P-256", "Server Temp Key: ECDH, prime256v1"),
                 ("-tls1_2", "X25519:P-256", "Server Temp Key: X25519"),
                 ("-tls1_2", "P-256", "Server Temp Key: ECDH, prime256v1")]
        for version, groups, seen in cases:
            out = s_client(self.mx, version, "-groups", groups, "-CAfile", self.ca,
                           "-servername", HOST, starttls=True)
            self.assertIn("Verify return code: 0 (ok)", out, (version, groups))
            self.assertIn(seen, out, (version, groups, out[-800:]))
        for version in ("-tls1_3", "-tls1_2"):
            done = subprocess.run(
                ["openssl", "s_client", "-starttls", "smtp", "-connect", "127.0.0.1:%d" % self.mx,
                 version, "-groups", "P-521", "-CAfile", self.ca, "-ign_eof"],
                input=b"QUIT\r\n", capture_output=True, timeout=30)
            self.assertNotEqual(done.returncode, 0, version)
            self.assertIn(b"Cipher is (NONE)", done.stdout, version)
        out = s_client(self.mx, "-CAfile", self.ca, starttls=True)
        self.assertIn("Verify return code: 0 (ok)", out)
        self.assertIsNone(self.d.process.poll())

    # Proves curl --ssl-reqd (STARTTLS) submits a message with AUTH.
    def test_curl(self):
        if shutil.which("curl") is None:
            self.skipTest("curl not installed")
        body = os.path.join(self.pki, "curl-mail.txt")
        with open(body, "w") as f:
            f.write("Subject: curl\r\n\r\nfrom curl\r\n")
        done = subprocess.run(
            ["curl", "-sS", "--ssl-reqd", "--cacert", self.ca, "--url",
             "smtp://127.0.0.1:%d" % self.submission, "--user", DEMO + ":demo",
             "--mail-from", DEMO, "--mail-rcpt", DEMO, "--upload-file", body,
             "--max-time", "30"], capture_output=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr.decode(errors="replace"))

    # Proves garbage instead of a ClientHello closes the connection and the daemon lives.
    def test_garbage_instead_of_client_hello(self):
        for payload in (b"EHLO not tls\r\n", bytes(range(256)) * 8, b"\x16\x03\x01\xff\xff" + b"A" * 100):
            sock = socket.create_connection(("127.0.0.1", self.smtps), timeout=10)
            try:
                sock.sendall(payload)
                deadline = time.monotonic() + 10
                closed = False
                while time.monotonic() < deadline:
                    try:
                        chunk = sock.recv(4096)
                    except ConnectionResetError:
                        closed = True
                        break
                    if not chunk:
                        closed = True
                        break
                self.assertTrue(closed, "not closed after %r" % payload[:16])
            finally:
                sock.close()
        with smtplib.SMTP_SSL("127.0.0.1", self.smtps, timeout=30,
                              context=client_context(self.ca)) as s:
            self.assertEqual(s.noop()[0], 250)

    # Proves a stalled handshake (half a ClientHello, then silence) times out and closes.
    def test_stalled_handshake_times_out(self):
        for port, starttls in ((self.smtps, False), (self.submission, True)):
            sock = socket.create_connection(("127.0.0.1", port), timeout=15)
            try:
                if starttls:
                    f = sock.makefile("rb")
                    f.readline()
                    sock.sendall(b"EHLO x\r\n")
                    while not f.readline().startswith(b"250 "):
                        pass
                    sock.sendall(b"STARTTLS\r\n")
                    self.assertTrue(f.readline().startswith(b"220"))
                sock.sendall(b"\x16\x03\x01\x02\x00\x01")  # A record header and one byte.
                start = time.monotonic()
                data = b""
                try:
                    while True:
                        chunk = sock.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                except ConnectionResetError:
                    pass
                self.assertLess(time.monotonic() - start, 14, "no timeout")
            finally:
                sock.close()

    # Proves plaintext pipelined after STARTTLS is discarded (CVE-2011-0411): the MAIL sent in
    # the same packet as STARTTLS is not executed inside TLS, and EHLO is required again.
    def test_pipelined_plaintext_after_starttls_discarded(self):
        sock = socket.create_connection(("127.0.0.1", self.submission), timeout=15)
        f = sock.makefile("rb")
        f.readline()
        sock.sendall(b"EHLO x\r\n")
        while not f.readline().startswith(b"250 "):
            pass
        sock.sendall(b"STARTTLS\r\nRSET\r\nMAIL FROM:<demo@example.test>\r\n")
        self.assertTrue(f.readline().startswith(b"220"))
        tls = client_context(self.ca).wrap_socket(sock, server_hostname=HOST)
        tf = tls.makefile("rb")
        tls.sendall(b"RCPT TO:<demo@example.test>\r\n")
        line = tf.readline()
        self.assertTrue(line.startswith(b"503"), line)  # No MAIL (and no EHLO) inside TLS.
        tls.sendall(b"EHLO x\r\n")
        lines = []
        while True:
            line = tf.readline()
            lines.append(line)
            if line.startswith(b"250 "):
                break
        self.assertIn(b"250-AUTH PLAIN LOGIN SCRAM-SHA-256\r\n", lines)
        self.assertNotIn(b"250-STARTTLS\r\n", lines)
        tls.close()

    # Proves the failure throttle: from one client address (127.0.0.2), wrong passwords get
    # 535 5.7.8 after a growing delay, and after failures_max the address gets 421 4.7.0,
    # even with the right password. Other addresses are not affected.
    def test_wrong_password_throttled(self):
        results = []
        for attempt in range(20):
            try:
                s = self.starttls(self.submission, source="127.0.0.2")
            except (smtplib.SMTPException, OSError) as e:
                results.append(("connect", str(e)))
                continue
            password = "demo" if attempt == 19 else "wrong%d" % attempt
            code, text = s.docmd("AUTH", "PLAIN " + plain_b64(DEMO, password))
            results.append((code, text))
            try:
                s.close()
            except OSError:
                pass
        codes = [r[0] for r in results]
        self.assertEqual(codes[:4], [535] * 4, results)
        self.assertEqual(codes[4], 421, results)  # The 5th failure reaches the limit.
        self.assertTrue(all(c == 421 for c in codes[5:]), results)
        self.assertIn(b"4.7.0", results[19][1])
        s = self.starttls(self.submission)  # 127.0.0.1 still may log in.
        s.login(DEMO, "demo")
        s.close()

    # Proves `ringpost user add` plus SIGHUP lets a new account log in, `user passwd` changes
    # its password, `user del` removes it.
    def test_user_commands_and_reload(self):
        def tool(*args, password=None):
            return subprocess.run([harness.binary("ringpost"), "--config", self.d.config_path]
                                  + list(args), input=password, capture_output=True,
                                  cwd=self.d.folder, timeout=60)
        self.assertEqual(tool("user", "add", "carol@example.test", password=b"pw1\n").returncode, 0)
        self.assertNotEqual(tool("user", "add", "carol@example.test", password=b"x\n").returncode, 0)
        self.assertNotEqual(tool("user", "add", "eve@other.test", password=b"x\n").returncode, 0)
        self.assertIn(b"carol@example.test", tool("user", "list").stdout)
        mark = len(self.d.log())
        self.d.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "auth:" not in self.d.log()[mark:] and time.monotonic() < deadline:
            time.sleep(0.05)
        s = self.starttls(self.submission)
        s.login("carol@example.test", "pw1")
        s.close()
        self.assertEqual(tool("user", "passwd", "carol@example.test", password=b"pw2\n").returncode, 0)
        self.assertEqual(tool("user", "del", "carol@example.test").returncode, 0)
        self.assertNotIn(b"carol@example.test", tool("user", "list").stdout)


def gsasl(port, ca, user, password):
    """GNU SASL's client: SCRAM-SHA-256 over SMTP STARTTLS. (exit code, output)."""
    done = subprocess.run(
        ["gsasl", "--smtp", "--connect=127.0.0.1:%d" % port, "--starttls", "--x509-ca-file", ca,
         "--hostname", HOST, "-m", "SCRAM-SHA-256", "-a", user, "-p", password, "--no-cb",
         "--verbose"],
        input=b"", capture_output=True, timeout=60)
    return done.returncode, (done.stdout + done.stderr).decode(errors="replace")


class ScramTest(unittest.TestCase):
    """SCRAM-SHA-256 (RFC 5802/7677) for SMTP AUTH, with GNU SASL's client (gsasl)."""

    @classmethod
    def setUpClass(cls):
        if shutil.which("gsasl") is None:
            raise unittest.SkipTest("gsasl not installed (tools/deps.sh)")
        cls.pki = tempfile.mkdtemp(prefix="ringpost-pki-")
        make_ca(cls.pki)
        cls.ca = os.path.join(cls.pki, "ca.pem")
        cls.cert, cls.key = make_cert(cls.pki, "server", HOST)
        cls.ports = harness.free_ports(3)
        cls.d = harness.Daemon(config_text=tls_config(cls.ports, cls.cert, cls.key),
                               wait_ports=cls.ports)
        cls.d.start()
        # SCRAM keys come from `ringpost user add` (config [[user]]s have none).
        added = subprocess.run([harness.binary("ringpost"), "--config", cls.d.config_path, "user",
                                "add", SCRAM_USER], input=b"pw-erin\n", capture_output=True,
                               cwd=cls.d.folder, timeout=60)
        assert added.returncode == 0, added.stderr
        mark = len(cls.d.log())
        cls.d.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "auth:" not in cls.d.log()[mark:] and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # run_on_all reaches the shards; bounded.

    @classmethod
    def tearDownClass(cls):
        harness.stop_checked(cls.d, cls.pki)

    def tool(self, *args, password=None):
        return subprocess.run([harness.binary("ringpost"), "--config", self.d.config_path]
                              + list(args), input=password, capture_output=True,
                              cwd=self.d.folder, timeout=60)

    # Proves gsasl logs in with SCRAM-SHA-256 over STARTTLS, checks our server signature, and
    # a wrong password, a config user without keys and an unknown user are refused (535).
    def test_gsasl_scram_login(self):
        code, out = gsasl(self.ports[1], self.ca, SCRAM_USER, "pw-erin")
        self.assertEqual(code, 0, out)
        self.assertIn("235", out)
        self.assertIn("SCRAM-SHA-256", out)
        code, out = gsasl(self.ports[1], self.ca, SCRAM_USER, "wrong")
        self.assertNotEqual(code, 0, out)
        self.assertIn("535", out)
        code, out = gsasl(self.ports[1], self.ca, DEMO, "demo")
        self.assertNotEqual(code, 0, out)
        self.assertIn("535", out)
        code, out = gsasl(self.ports[1], self.ca, "nobody@example.test", "x")
        self.assertNotEqual(code, 0, out)
        self.assertIn("535", out)

    # Proves `ringpost user add` stores SCRAM keys that match GNU SASL's own derivation
    # (gsasl --mkpasswd with the same salt and count), and the new account logs in with
    # SCRAM after SIGHUP; the SMTP transcript offers the mechanism only after STARTTLS.
    def test_user_add_scram_keys(self):
        address = "dave@example.test"
        self.assertEqual(self.tool("user", "add", address, password=b"pw-dave\n").returncode, 0)
        self.addCleanup(self.tool, "user", "del", address)
        accounts = os.path.join(self.d.folder, "data", "accounts")
        with open(accounts) as f:
            line = [l for l in f.read().splitlines() if l.startswith(address + "\t")][0]
        scram = line.split("\t")[2]
        # RFC 5803: SCRAM-SHA-256$<count>:<salt>$<StoredKey>:<ServerKey>
        head, keys = scram.split("$")[1:]
        count, salt = head.split(":")
        stored, server = keys.split(":")
        derived = subprocess.run(
            ["gsasl", "--mkpasswd", "--mechanism", "SCRAM-SHA-256", "--password", "pw-dave",
             "--salt", salt, "--iteration-count", count], capture_output=True, timeout=60,
            check=True).stdout.decode().strip()
        self.assertEqual(derived, "{SCRAM-SHA-256}%s,%s,%s,%s" % (count, salt, stored, server))
        mark = len(self.d.log())
        self.d.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "auth:" not in self.d.log()[mark:] and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # run_on_all reaches the shards; bounded.
        code, out = gsasl(self.ports[1], self.ca, address, "pw-dave")
        self.assertEqual(code, 0, out)
        raw = Raw(self.ports[1])
        self.assertEqual(raw.reply()[0], 220)
        code, lines = raw.command("EHLO client.test")
        self.assertFalse(any("SCRAM" in l for l in lines), lines)
        code, lines = raw.command("AUTH SCRAM-SHA-256 " + base64.b64encode(b"n,,n=x,r=abc").decode())
        self.assertEqual(code, 538, lines)
        raw.close()

    # Proves bad SCRAM input gets 501 5.5.2 (bad base64, a malformed client-first, a final
    # message with the wrong nonce) and "*" cancels with 501; the session goes on.
    def test_scram_malformed(self):
        s = smtplib.SMTP("127.0.0.1", self.ports[1], timeout=30)
        s.ehlo(HOST)
        s.starttls(context=client_context(self.ca))
        s.ehlo(HOST)
        self.assertIn("SCRAM-SHA-256", s.esmtp_features["auth"])
        code, text = s.docmd("AUTH", "SCRAM-SHA-256 not*base64")
        self.assertEqual((code, text[:5]), (501, b"5.5.2"))
        code, text = s.docmd("AUTH", "SCRAM-SHA-256 " + base64.b64encode(b"p=tls-unique,,n=a,r=b").decode())
        self.assertEqual((code, text[:5]), (501, b"5.5.2"))
        code, text = s.docmd("AUTH", "SCRAM-SHA-256 " + base64.b64encode(b"n,,n=%s,r=abc" % SCRAM_USER.encode()).decode())
        self.assertEqual(code, 334, text)
        challenge = base64.b64decode(text).decode()
        self.assertTrue(challenge.startswith("r=abc"), challenge)
        self.assertIn(",i=4096", challenge)
        final = b"c=biws,r=abcWRONG,p=" + base64.b64encode(b"\0" * 32)
        code, text = s.docmd(base64.b64encode(final).decode())
        self.assertEqual((code, text[:5]), (501, b"5.5.2"))
        code, text = s.docmd("AUTH", "SCRAM-SHA-256")
        self.assertEqual(code, 334, text)
        code, text = s.docmd("*")
        self.assertEqual(code, 501, text)
        self.assertEqual(s.noop()[0], 250)
        s.close()


class TlsReloadTest(unittest.TestCase):
    # Proves SIGHUP reloads the certificate: new handshakes present the new one while a
    # session opened before the reload goes on working.
    def test_cert_reload(self):
        pki = tempfile.mkdtemp(prefix="ringpost-pki-")
        self.addCleanup(shutil.rmtree, pki, True)
        make_ca(pki)
        ca = os.path.join(pki, "ca.pem")
        old_cert, old_key = make_cert(pki, "old", HOST)
        new_cert, new_key = make_cert(pki, "new", "mail2.example.test")
        live_cert, live_key = os.path.join(pki, "live.pem"), os.path.join(pki, "live.key")
        shutil.copy(old_cert, live_cert)
        shutil.copy(old_key, live_key)
        ports = harness.free_ports(3)
        with harness.Daemon(config_text=tls_config(ports, live_cert, live_key),
                            wait_ports=ports) as d:
            context = ssl.create_default_context(cafile=ca)
            context.check_hostname = False
            before = smtplib.SMTP_SSL("127.0.0.1", ports[2], timeout=30, context=context)
            before.ehlo(HOST)
            self.assertEqual(peer_common_name(before.sock), HOST)
            shutil.copy(new_cert, live_cert)
            shutil.copy(new_key, live_key)
            mark = len(d.log())
            d.signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while "certificate reloaded" not in d.log()[mark:] and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertIn("certificate reloaded", d.log()[mark:])
            # run_on_all posts to the shards; give them a moment, bounded.
            names = set()
            for _ in range(20):
                with smtplib.SMTP_SSL("127.0.0.1", ports[2], timeout=30, context=context) as s:
                    names.add(peer_common_name(s.sock))
                if names == {"mail2.example.test"}:
                    break
                names.clear()
                time.sleep(0.1)
            self.assertEqual(names, {"mail2.example.test"})
            self.assertEqual(before.noop()[0], 250)
            before.login(DEMO, "demo")
            self.assertEqual(before.sendmail(DEMO, [DEMO], b"Subject: across reload\r\n\r\nx\r\n"), {})
            self.assertEqual(peer_common_name(before.sock), HOST)
            before.quit()
            self.assertEqual(d.stop(), 0)


def s_client(port, *args, starttls=False, data=b"QUIT\r\n"):
    """openssl s_client against 127.0.0.1:port; its stdout."""
    command = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-ign_eof"]
    if starttls:
        command += ["-starttls", "smtp"]
    done = subprocess.run(command + list(args), input=data, capture_output=True, timeout=30)
    return done.stdout.decode(errors="replace")


def subject_cn(out):
    """The CN of the server certificate in s_client output ("subject=CN = x")."""
    for line in out.splitlines():
        if line.startswith("subject=") and "CN" in line:
            return line.split("CN", 1)[1].lstrip(" =").split(",")[0].strip()
    return None


class TlsSniAndTicketsTest(unittest.TestCase):
    """One daemon (2 shards): a default certificate, one chosen by SNI ([[tls.certificates]]),
    and a submission listener with its own certificate."""

    @classmethod
    def setUpClass(cls):
        cls.pki = tempfile.mkdtemp(prefix="ringpost-pki-")
        make_ca(cls.pki)
        cls.ca = os.path.join(cls.pki, "ca.pem")
        cls.cert, cls.key = make_cert(cls.pki, "default", HOST)
        cls.other_cert, cls.other_key = make_cert(cls.pki, "other", "mx.other.test")
        cls.submit_cert, cls.submit_key = make_cert(cls.pki, "submit", "submit.example.test")
        cls.renamed_cert, cls.renamed_key = make_cert(cls.pki, "renamed", "mx2.other.test")
        cls.named = os.path.join(cls.pki, "named.pem"), os.path.join(cls.pki, "named.key")
        shutil.copy(cls.other_cert, cls.named[0])
        shutil.copy(cls.other_key, cls.named[1])
        cls.ports = harness.free_ports(3)
        cls.mx, cls.submission, cls.smtps = cls.ports
        text = tls_config(cls.ports, cls.cert, cls.key,
                          '\n[[tls.certificates]]\nnames = ["mx.other.test", "*.other.test"]\n'
                          'cert_file = "%s"\nkey_file = "%s"\n' % cls.named)
        # The submission listener's own certificate.
        text = text.replace('kind = "submission"\n', 'kind = "submission"\ncert_file = "%s"\n'
                            'key_file = "%s"\n' % (cls.submit_cert, cls.submit_key))
        cls.d = harness.Daemon(config_text=text, wait_ports=cls.ports)
        cls.d.start()

    @classmethod
    def tearDownClass(cls):
        harness.stop_checked(cls.d, cls.pki)

    # Proves SNI selection with openssl s_client -servername: the named certificate for its
    # names (exact and wildcard), the default for an unknown name or none, and a listener's
    # own certificate as that listener's default (STARTTLS on submission).
    def test_sni_picks_certificate(self):
        cases = [
            (self.smtps, False, ["-servername", "mx.other.test"], "mx.other.test"),
            (self.smtps, False, ["-servername", "a.other.test"], "mx.other.test"),
            (self.smtps, False, ["-servername", "unknown.test"], HOST),
            (self.smtps, False, ["-noservername"], HOST),
            (self.mx, True, ["-servername", "mx.other.test"], "mx.other.test"),
            (self.mx, True, ["-servername", HOST], HOST),
            (self.submission, True, ["-servername", "unknown.test"], "submit.example.test"),
            (self.submission, True, ["-noservername"], "submit.example.test"),
            (self.submission, True, ["-servername", "mx.other.test"], "mx.other.test"),
        ]
        for port, starttls, args, expected in cases:
            for version in ("-tls1_3", "-tls1_2"):
                out = s_client(port, version, "-CAfile", self.ca, *args, starttls=starttls)
                self.assertEqual(subject_cn(out), expected, (port, args, version, out[-600:]))
                self.assertIn("Verify return code: 0 (ok)", out)

    # Proves session tickets resume whichever shard the reconnect lands on (2 shards,
    # SO_REUSEPORT spreads the 12 reconnects), for TLS 1.3 and 1.2, and after SIGHUP (the
    # key rotates; the previous key still decrypts).
    def test_tickets_resume_across_shards(self):
        sessions = {}
        for version in ("-tls1_3", "-tls1_2"):
            session = sessions[version] = os.path.join(self.pki, "session%s.pem" % version)
            out = s_client(self.smtps, version, "-CAfile", self.ca, "-sess_out", session)
            self.assertIn("New, TLSv1", out)
            self.assertTrue(os.path.getsize(session) > 0)
            results = []
            for _ in range(12):
                out = s_client(self.smtps, version, "-CAfile", self.ca, "-sess_in", session)
                results.append("Reused, TLSv1" in out)
            self.assertEqual(results, [True] * 12, version)
        mark = len(self.d.log())
        self.d.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "ticket key rotated" not in self.d.log()[mark:] and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertIn("ticket key rotated", self.d.log()[mark:])
        time.sleep(0.5)  # run_on_all reaches both shards; bounded.
        for version, session in sessions.items():
            for _ in range(4):
                out = s_client(self.smtps, version, "-CAfile", self.ca, "-sess_in", session)
                self.assertIn("Reused, TLSv1", out, version)

    # Proves a client without a session gets a full TLS 1.3 handshake and a ticket (with the
    # lifetime hint from tls.ticket_lifetime_s).
    def test_full_handshake_gets_ticket(self):
        out = s_client(self.smtps, "-tls1_3", "-CAfile", self.ca, "-servername", HOST)
        self.assertIn("New, TLSv1.3", out)
        self.assertIn("New Session Ticket arrived", out)
        self.assertIn("lifetime hint: 1800", out)

    # Proves SIGHUP reloads a named certificate: new handshakes for that name see the new
    # one while a session opened before goes on.
    def test_named_certificate_reload(self):
        context = ssl.create_default_context(cafile=self.ca)
        sock = socket.create_connection(("127.0.0.1", self.smtps), timeout=30)
        context.check_hostname = False
        tls = context.wrap_socket(sock, server_hostname="mx.other.test")
        self.assertEqual(peer_common_name(tls), "mx.other.test")
        f = tls.makefile("rb")
        self.assertTrue(f.readline().startswith(b"220"))
        shutil.copy(self.renamed_cert, self.named[0])
        shutil.copy(self.renamed_key, self.named[1])
        self.addCleanup(shutil.copy, self.other_key, self.named[1])
        self.addCleanup(shutil.copy, self.other_cert, self.named[0])
        mark = len(self.d.log())
        self.d.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "certificate reloaded" not in self.d.log()[mark:] and time.monotonic() < deadline:
            time.sleep(0.05)
        seen = None
        for _ in range(20):
            seen = subject_cn(s_client(self.smtps, "-CAfile", self.ca, "-servername", "mx.other.test"))
            if seen == "mx2.other.test":
                break
            time.sleep(0.1)
        self.assertEqual(seen, "mx2.other.test")
        tls.sendall(b"NOOP\r\n")
        self.assertTrue(f.readline().startswith(b"250"))
        tls.close()
        # Put the first certificate back for the other tests (cleanups run after).
        shutil.copy(self.other_cert, self.named[0])
        shutil.copy(self.other_key, self.named[1])
        mark = len(self.d.log())
        self.d.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "certificate reloaded" not in self.d.log()[mark:] and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)


if __name__ == "__main__":
    harness.require_io_uring()
    unittest.main(verbosity=2)
