"""tests/integration/test_mail_clients.py: real mail clients against the real ringpostd.

One daemon for the module serves SMTP (mx), POP3 (STLS), POP3S, IMAP (STARTTLS) and IMAPS with
a certificate for 127.0.0.1 signed by a test CA (openssl), and plaintext logins refused
without TLS (auth.plaintext_loopback = false), so every client below must use TLS and
verify the certificate. Clients: fetchmail (keep and nokeep; pop3s and STLS), mbsync from
isync (an IMAP account synced both ways with a local Maildir: pull, push, flags both ways),
curl (pop3s, pop3 --ssl-reqd, imaps, imap --ssl-reqd). Each client run is bounded by a
timeout; a missing client skips its test.
"""

import imaplib
import os
import re
import shutil
import smtplib
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import test_tls  # noqa: E402  (the test CA helpers)
from smtp_util import mailbox, smtp_config, wait_mailbox  # noqa: E402
from test_pop3 import PASSWORD, USERS  # noqa: E402

HOST = "127.0.0.1"  # The certificate's name: clients connect and verify by this name.


def clients_config(ports, pki):
    smtp_port, pop3_port, pop3s_port, imap_port, imaps_port = ports
    text = smtp_config(smtp_port, users=USERS,
                       extra="\n[auth]\nplaintext_loopback = false\nfailure_delay_ms = 20\n"
                             "failure_delay_max_ms = 100\n")
    text += ('\n[tls]\ncert_file = "%s/server.pem"\nkey_file = "%s/server.key"\n'
             'handshake_timeout_ms = 3000\n' % (pki, pki))
    for kind, port in (("pop3", pop3_port), ("pop3s", pop3s_port)):
        text += '\n[[pop3.listener]]\naddress = "127.0.0.1:%d"\nkind = "%s"\n' % (port, kind)
    for kind, port in (("imap", imap_port), ("imaps", imaps_port)):
        text += '\n[[imap.listener]]\naddress = "127.0.0.1:%d"\nkind = "%s"\n' % (port, kind)
    return text


class MailClientsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pki = tempfile.mkdtemp(prefix="ringpost-clients-pki-")
        test_tls.make_ca(cls.pki)
        test_tls.make_cert(cls.pki, "server", HOST)
        cls.ca = os.path.join(cls.pki, "ca.pem")
        cls.ports = harness.free_ports(5)
        cls.smtp, cls.pop3, cls.pop3s, cls.imap, cls.imaps = cls.ports
        cls.d = harness.Daemon(config_text=clients_config(cls.ports, cls.pki),
                               wait_ports=cls.ports)
        cls.d.start()

    @classmethod
    def tearDownClass(cls):
        harness.stop_checked(cls.d, cls.pki)

    def setUp(self):
        self.assertIsNone(self.d.process.poll(), "ringpostd died:\n" + self.d.log())
        self.home = tempfile.mkdtemp(prefix="ringpost-clients-")
        self.addCleanup(shutil.rmtree, self.home, True)

    def deliver(self, user, bodies):
        before = len(mailbox(self.d, user))
        with smtplib.SMTP(HOST, self.smtp, timeout=30) as client:
            for body in bodies:
                client.sendmail("sender@remote.test", [user], body)
        return wait_mailbox(self.d, user, before + len(bodies))

    def imap_client(self, user):
        context = ssl.create_default_context(cafile=self.ca)
        client = imaplib.IMAP4_SSL(HOST, self.imaps, ssl_context=context, timeout=30)
        client.login(user, PASSWORD[user])
        return client

    def empty(self, user):
        """Expunges every message of `user`'s INBOX (the tests share the daemon)."""
        client = self.imap_client(user)
        client.select("INBOX")
        typ, data = client.uid("SEARCH", "ALL")
        if data[0]:
            client.uid("STORE", b",".join(data[0].split()), "+FLAGS", "(\\Deleted)")
            client.expunge()
        client.logout()
        self.assertEqual(mailbox(self.d, user), {})

    def run_client(self, args, env=None):
        done = subprocess.run(args, capture_output=True, timeout=60, env=env)
        log = (done.stdout + done.stderr).decode(errors="replace")
        self.assertEqual(done.returncode, 0, "%s\n%s\n---- ringpostd ----\n%s"
                         % (" ".join(args), log, self.d.log()[-4000:]))
        return done

    # Proves fetchmail retrieves everything over pop3s (`ssl`, keep: the messages stay) and
    # over STLS (`sslproto tls1.2+`, nokeep: they are deleted), verifying the certificate.
    def test_fetchmail(self):
        if shutil.which("fetchmail") is None:
            self.skipTest("fetchmail missing")
        user = USERS[1]
        self.empty(user)
        bodies = [b"Subject: fm%d\r\n\r\nbody %d\r\n.dot\r\n" % (i, i) for i in range(3)]
        self.deliver(user, bodies)
        out_dir = os.path.join(self.home, "out")
        os.mkdir(out_dir)
        rc = os.path.join(self.home, "fetchmailrc")
        mda = "sh -c 'cat > %s/$(date +%%s%%N).eml'" % out_dir
        runs = ((self.pop3s, "ssl", True), (self.pop3, "sslproto tls1.2+", False))
        for index, (port, how, keep) in enumerate(runs):
            with open(rc, "w") as f:
                f.write('poll %s protocol pop3 port %d auth password user "%s" password "%s" '
                        'is "nobody" here %s sslcertck sslcertfile "%s" %s mda "%s"\n'
                        % (HOST, port, user, PASSWORD[user], how, self.ca,
                           "keep" if keep else "nokeep", mda))
            os.chmod(rc, 0o600)
            env = dict(os.environ, HOME=self.home, FETCHMAILHOME=self.home)
            self.run_client(["fetchmail", "-f", rc, "--nosyslog", "-v", "-a"], env=env)
            self.assertEqual(len(os.listdir(out_dir)), 3 * (index + 1))
            # QUIT's +OK comes after the expunge is durable; fetchmail has seen it.
            self.assertEqual(len(mailbox(self.d, user)), 3 if keep else 0)
        got = []
        for name in os.listdir(out_dir):
            with open(os.path.join(out_dir, name), "rb") as f:
                got.append(f.read().replace(b"\r\n", b"\n"))
        for b in bodies:
            self.assertEqual(sum(b.replace(b"\r\n", b"\n") in g for g in got), 2, b)

    def mbsync(self, rc):
        self.run_client(["mbsync", "-c", rc, "-a"])

    # Proves mbsync (isync) syncs an IMAPS account with a local Maildir both ways: pulls the
    # server's messages byte-exact, pushes a message written to the Maildir (APPEND, with its
    # \Seen flag), carries a flag set on the server (\Flagged) to the local file name and a
    # flag set locally (\Answered) to the server, and a second run changes nothing.
    def test_mbsync_both_ways(self):
        if shutil.which("mbsync") is None:
            self.skipTest("mbsync (isync) missing")
        user = USERS[0]
        self.empty(user)
        bodies = [b"Subject: mb%d\r\n\r\nline %d\r\n" % (i, i) for i in range(2)]
        stored = self.deliver(user, bodies)
        maildir = os.path.join(self.home, "mail")
        os.mkdir(maildir)
        rc = os.path.join(self.home, "mbsyncrc")
        with open(rc, "w") as f:
            f.write("IMAPAccount far\nHost %s\nPort %d\nUser %s\nPass %s\nSSLType IMAPS\n"
                    "CertificateFile %s\nSystemCertificates no\nTimeout 20\n\n"
                    "IMAPStore far\nAccount far\n\n"
                    "MaildirStore near\nPath %s/\nInbox %s/INBOX\n\n"
                    "Channel sync\nFar :far:\nNear :near:\nPatterns INBOX\nCreate Near\n"
                    "Sync All\nExpunge None\nSyncState *\n"
                    % (HOST, self.imaps, user, PASSWORD[user], self.ca, maildir, maildir))
        inbox = os.path.join(maildir, "INBOX")

        def local_files():
            files = {}
            for sub in ("new", "cur"):
                folder = os.path.join(inbox, sub)
                for name in os.listdir(folder) if os.path.isdir(folder) else ():
                    with open(os.path.join(folder, name), "rb") as fh:
                        files[os.path.join(sub, name)] = untracked(fh.read())
            return files

        # Maildir files have LF line ends; mbsync converts (CRLF on the IMAP side) and may
        # add an X-TUID: header (its own tracking id) to the messages it copies.
        def lf(data):
            return data.replace(b"\r\n", b"\n")

        def untracked(data):
            return re.sub(rb"(?m)^X-TUID: [^\r\n]*\r?\n", b"", data)

        # Pull.
        self.mbsync(rc)
        files = local_files()
        self.assertEqual(sorted(files.values()), sorted(lf(m) for m in stored.values()))
        # Push a local message, marked seen.
        pushed = b"From: me@example.test\r\nSubject: pushed\r\n\r\nfrom the maildir\r\n"
        with open(os.path.join(inbox, "cur", "1700000000.ringpost.test:2,S"), "wb") as fh:
            fh.write(lf(pushed))
        # A flag set on the server: \Flagged on the first delivered message.
        client = self.imap_client(user)
        client.select("INBOX")
        first_uid = min(int(u) for u in client.uid("SEARCH", "ALL")[1][0].split())
        client.uid("STORE", str(first_uid), "+FLAGS", "(\\Flagged)")
        client.logout()
        self.mbsync(rc)
        on_server = mailbox(self.d, user)
        self.assertEqual(len(on_server), 3)
        self.assertIn(pushed, [untracked(m) for m in on_server.values()])
        client = self.imap_client(user)
        client.select("INBOX")
        typ, data = client.uid("SEARCH", "SEEN")
        seen = data[0].split()
        self.assertEqual(len(seen), 1)
        typ, data = client.uid("FETCH", seen[0], "(BODY.PEEK[])")
        self.assertEqual(untracked(data[0][1]), pushed)
        client.logout()
        files = local_files()
        flagged = [name for name in files if name.startswith("cur/") and
                   ":2," in name and "F" in name.split(":2,")[1]]
        self.assertEqual(len(flagged), 1, files.keys())
        self.assertEqual(files[flagged[0]], lf(stored[min(stored)]))
        # A flag set locally: replied (R) on the other delivered message -> \Answered.
        other = [name for name, data in files.items() if data == lf(stored[max(stored)])]
        self.assertEqual(len(other), 1)
        old = os.path.join(inbox, other[0])
        base = os.path.basename(old).split(":2,")[0]
        flags = os.path.basename(old).split(":2,")[1] if ":2," in old else ""
        os.rename(old, os.path.join(inbox, "cur", base + ":2," + "".join(sorted(flags + "RS"))))
        self.mbsync(rc)
        client = self.imap_client(user)
        client.select("INBOX")
        typ, data = client.uid("SEARCH", "ANSWERED")
        self.assertEqual(len(data[0].split()), 1)
        typ, data = client.uid("FETCH", data[0].split()[0], "(BODY.PEEK[])")
        self.assertEqual(data[0][1], stored[max(stored)])
        client.logout()
        # Nothing left to do: a second run leaves both sides as they are.
        before = local_files()
        self.mbsync(rc)
        self.assertEqual(local_files(), before)
        self.assertEqual(len(mailbox(self.d, user)), 3)

    # Proves curl's mail URLs under TLS: pop3s:// and pop3:// --ssl-reqd (STLS) list and
    # retrieve, imaps:// and imap:// --ssl-reqd (STARTTLS) fetch by UID, byte-exact, with
    # the certificate verified against the test CA; a POP3 login without TLS is refused.
    def test_curl(self):
        if shutil.which("curl") is None:
            self.skipTest("curl missing")
        user = USERS[1]
        self.empty(user)
        stored = self.deliver(user, [b"Subject: curl\r\n\r\n.leading dot\r\nline\r\n"])
        body = stored[max(stored)]
        client = self.imap_client(user)
        client.select("INBOX")
        uid = client.uid("SEARCH", "ALL")[1][0].split()[-1].decode()
        client.logout()
        base = ["curl", "-s", "-S", "--max-time", "20", "--cacert", self.ca,
                "-u", "%s:%s" % (user, PASSWORD[user])]
        for url, extra in (("pop3s://%s:%d/1" % (HOST, self.pop3s), []),
                           ("pop3://%s:%d/1" % (HOST, self.pop3), ["--ssl-reqd"]),
                           ("imaps://%s:%d/INBOX;UID=%s" % (HOST, self.imaps, uid), []),
                           ("imap://%s:%d/INBOX;UID=%s" % (HOST, self.imap, uid),
                            ["--ssl-reqd"])):
            done = self.run_client(base + extra + [url])
            self.assertEqual(done.stdout, body, url)
        # POP3 without TLS: USER is refused ("-ERR [AUTH] ..."), so curl fails to log in.
        done = subprocess.run(base + ["pop3://%s:%d/1" % (HOST, self.pop3)],
                              capture_output=True, timeout=30)
        self.assertNotEqual(done.returncode, 0)


if __name__ == "__main__":
    harness.require_io_uring()
    unittest.main(verbosity=2)
