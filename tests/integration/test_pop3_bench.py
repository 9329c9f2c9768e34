"""tests/integration/test_pop3_bench.py: a POP3 RETR throughput probe (not a ctest test).

    RP_BUILD_DIR=build python3 tests/integration/test_pop3_bench.py 2000

The Python client is likely the bottleneck; ringpost-bench should replace it.
"""
# POP3 RETR throughput: N messages of 4 KiB delivered by SMTP, then one POP3 session
# retrieves all of them pipelined over a raw socket (every RETR in one write).
import os, sys, time, socket, smtplib, poplib
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness
from test_pop3 import pop3_config, PASSWORD
N = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
sp, pp = harness.free_ports(2)
d = harness.Daemon(config_text=pop3_config(sp, pp), wait_ports=[sp, pp]); d.start()
u = "demo@example.test"
body = b"Subject: bench\r\n\r\n" + (b"x" * 78 + b"\r\n") * 51
with smtplib.SMTP("127.0.0.1", sp) as c:
    for i in range(N): c.sendmail("a@b.test", [u], body)
while True:
    p = poplib.POP3("127.0.0.1", pp); p.user(u); p.pass_("demo"); n = p.stat()[0]; p.quit()
    if n >= N: break
    time.sleep(0.1)
for rnd in range(3):
    s = socket.create_connection(("127.0.0.1", pp)); f = s.makefile("rb")
    f.readline(); s.sendall(b"USER demo@example.test\r\nPASS demo\r\n"); f.readline(); f.readline()
    t0 = time.perf_counter()
    s.sendall(b"".join(b"RETR %d\r\n" % (i + 1) for i in range(N)))
    got = 0; total = 0
    buf = b""
    while got < N:
        chunk = s.recv(1 << 20); total += len(chunk)
        buf = buf[-4:] + chunk
        got += (buf.count(b"\r\n.\r\n"))
        buf = buf[-4:]
    dt = time.perf_counter() - t0
    s.sendall(b"QUIT\r\n"); s.close()
    print("round %d: %d RETR of %d bytes in %.3f s: %.0f messages/s, %.1f MB/s" % (rnd, N, len(body), dt, N / dt, total / dt / 1e6))
d.stop()
