#!/usr/bin/env python3
"""Smoke runs of ringpost-bench, so the tool itself cannot rot.

Proves that ringpost-bench, bounded by count or by time, sends the right number of messages
to a real SMTP server (Postfix's smtp-sink on a free loopback port, started and stopped here)
with zero errors, reports plausible numbers (throughput > 0, percentiles in order), counts
refusals by reply code, and stops by itself when the server is absent.

RP_BENCH_TARGET=HOST:PORT points the count-bounded runs at a running server instead of
smtp-sink (e.g. ringpostd with the demo config: RP_BENCH_TO=demo@example.test).
Exit 77 (skip) only when smtp-sink cannot be installed, or io_uring is unavailable.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

BUILD = os.environ.get("RP_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build"))
BENCH = os.path.join(BUILD, "tools", "ringpost-bench")
SKIP = 77
failures = []


def check(condition, what):
    if not condition:
        failures.append(what)
        print("FAIL: " + what, flush=True)


def find_smtp_sink():
    path = shutil.which("smtp-sink") or shutil.which("smtp-sink", path="/usr/sbin:/sbin")
    if path:
        return path
    if os.geteuid() != 0:
        return None
    # Debian's postfix package ships smtp-sink; "No configuration" starts nothing system-wide.
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run("echo 'postfix postfix/main_mailer_type select No configuration' "
                   "| debconf-set-selections", shell=True, check=False)
    for command in (["apt-get", "install", "-y", "-qq", "--no-install-recommends", "postfix"],
                    ["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "postfix"]):
        subprocess.run(command, env=env, check=False, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=300)
        path = shutil.which("smtp-sink", path="/usr/sbin:/sbin:/usr/bin")
        if path:
            return path
    return None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, seconds=10):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


class Sink:
    """smtp-sink on a free loopback port; `extra` are its options (e.g. ["-r", "RCPT"])."""

    def __init__(self, binary, extra=()):
        self.port = free_port()
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        self.process = subprocess.Popen([binary, *user, *extra, f"127.0.0.1:{self.port}", "256"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_listening(self.port):
            self.stop()
            raise RuntimeError("smtp-sink did not start")

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def bench(host, port, *args, timeout=60):
    command = [BENCH, "smtp", "--host", host, "--port", str(port), "--json", "--quiet", *args]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    elapsed = time.monotonic() - started
    if done.returncode == SKIP:
        print("SKIP: ringpost-bench says io_uring is unavailable", flush=True)
        sys.exit(SKIP)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        report = None
    if report is None:
        print("stdout:", done.stdout, "stderr:", done.stderr, flush=True)
    return done.returncode, report, elapsed


def check_plausible(report, name, messages, sessions):
    check(report is not None, f"{name}: JSON report")
    if report is None:
        return
    check(report["attempted"] == messages, f"{name}: attempted {report['attempted']} != {messages}")
    check(report["completed"] == messages, f"{name}: completed {report['completed']} != {messages}")
    check(report["failed"] == 0, f"{name}: failed {report['failed']}")
    check(report["error_count"] == 0 and report["errors"] == {},
          f"{name}: errors {report['errors']}")
    check(report["per_second"] > 0, f"{name}: throughput {report['per_second']}")
    check(report["mb_per_second"] > 0, f"{name}: MB/s {report['mb_per_second']}")
    check(report["elapsed_s"] > 0, f"{name}: elapsed {report['elapsed_s']}")
    check(report["counters"]["connections"] >= sessions,
          f"{name}: connections {report['counters']['connections']} < {sessions}")
    latency = report["latency_ms"]
    for step in ("connect", "greeting", "ehlo", "envelope", "accept", "message"):
        s = latency[step]
        check(s["count"] > 0, f"{name}: {step} has no samples")
        ordered = [s["min"], s["p50"], s["p90"], s["p99"], s["p99_9"], s["max"]]
        check(all(a <= b for a, b in zip(ordered, ordered[1:])),
              f"{name}: {step} percentiles out of order: {ordered}")
        check(s["min"] <= s["mean"] <= s["max"], f"{name}: {step} mean outside [min, max]")
    check(latency["accept"]["count"] == messages, f"{name}: accept count")
    check(latency["message"]["count"] == messages, f"{name}: message count")
    check(latency["accept"]["p50"] <= latency["message"]["p50"] + 1e-3,
          f"{name}: accept p50 above message p50")


def main():
    if not os.access(BENCH, os.X_OK):
        print(f"FAIL: no {BENCH}; build the ringpost-bench target", flush=True)
        return 1
    target = os.environ.get("RP_BENCH_TARGET")
    to = os.environ.get("RP_BENCH_TO", "u%d@bench.test")
    sink_binary = find_smtp_sink()
    if sink_binary is None:
        print("SKIP: smtp-sink (Debian's postfix package) cannot be installed", flush=True)
        return SKIP
    sinks = []
    try:
        if target:
            host, port = target.rsplit(":", 1)
        else:
            sinks.append(Sink(sink_binary))
            host, port = "127.0.0.1", sinks[0].port

        # Count-bounded, persistent sessions, two threads, a size range, several recipients.
        code, report, _ = bench(host, port, "--threads", "2", "--sessions", "8", "--messages",
                                "600", "--size", "1k-16k", "--rcpts", "2", "--to", to)
        check(code == 0, f"plain run exit status {code}")
        check_plausible(report, "plain", 600, 8)

        # Pipelined, a fresh connection every 5 messages.
        code, report, _ = bench(host, port, "--sessions", "4", "--messages", "300",
                                "--pipelining", "--per-session", "5", "--to", to)
        check(code == 0, f"pipelined run exit status {code}")
        check_plausible(report, "pipelined", 300, 4)
        if report:
            # 60 sessions carry 5 messages each; a session that reconnects just as the last
            # messages are claimed by others ends with QUIT and no message.
            connections = report["counters"]["connections"]
            check(60 <= connections <= 64, f"pipelined: connections {connections} not 60..64")
            check(report["counters"]["quits"] == connections,
                  "pipelined: every session ended with QUIT")

        if not target:
            # Time-bounded: no --messages; stops by itself soon after one second.
            code, report, elapsed = bench(host, port, "--sessions", "4", "--duration", "1s")
            check(code == 0, f"timed run exit status {code}")
            check(report is not None and report["completed"] > 0, "timed run sent messages")
            check(report is not None and report["error_count"] == 0, "timed run has no errors")
            check(elapsed < 15, f"timed run took {elapsed:.1f} s")

            # Refusals are counted by reply code: smtp-sink -r RCPT answers 4xx to RCPT.
            sinks.append(Sink(sink_binary, ["-r", "RCPT"]))
            code, report, _ = bench("127.0.0.1", sinks[-1].port, "--sessions", "2",
                                    "--messages", "20", "--max-errors", "0")
            check(code == 1, f"refused run exit status {code} != 1")
            if report:
                check(report["completed"] == 0 and report["failed"] == 20,
                      f"refused run: completed {report['completed']} failed {report['failed']}")
                codes = [key for key in report["errors"] if key.endswith(" rcpt")]
                check(len(codes) == 1 and codes[0].startswith("4"),
                      f"refused run: errors {report['errors']}")
                check(report["errors"].get(codes[0] if codes else "", 0) == 20,
                      f"refused run: 20 RCPT refusals in {report['errors']}")

            # 421 closes the session; it reconnects after --reconnect-delay and goes on.
            sinks.append(Sink(sink_binary, ["-Q", "MAIL"]))
            code, report, elapsed = bench("127.0.0.1", sinks[-1].port, "--sessions", "2",
                                          "--messages", "10", "--max-errors", "0",
                                          "--reconnect-delay", "10ms")
            check(code == 1, f"421 run exit status {code} != 1")
            if report:
                check(report["failed"] == 10, f"421 run: failed {report['failed']}")
                check(report["errors"].get("421 envelope", 0) == 10,
                      f"421 run: errors {report['errors']}")
                check(report["counters"]["connections"] >= 10,
                      f"421 run: reconnected {report['counters']['connections']} times")

            # Nobody listening: connection errors, bounded by --max-errors, exit 1, quickly.
            code, report, elapsed = bench("127.0.0.1", free_port(), "--sessions", "2",
                                          "--messages", "100", "--max-errors", "10",
                                          "--reconnect-delay", "10ms")
            check(code == 1, f"no-server run exit status {code} != 1")
            check(elapsed < 15, f"no-server run took {elapsed:.1f} s")
            if report:
                check(report["errors"].get("connect refused", 0) >= 10,
                      f"no-server run: errors {report['errors']}")
                check(report["stop_reason"] != "", "no-server run names why it stopped")
    finally:
        for sink in sinks:
            sink.stop()
    passed = 0 if failures else 1
    print(f"{passed} passed, {len(failures)} failed", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
