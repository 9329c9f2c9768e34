# tests: ringpost-bench. Unit tests of its histogram, options, SMTP/POP3/IMAP readers and
# report; a smoke run against Postfix's smtp-sink (or RP_BENCH_TARGET) so the tool cannot rot;
# pop3/imap (bench_access) and relay (bench_relay, with dnsmasq) against the real ringpostd.
# (bench_ringpostd, SMTP with TLS and AUTH, is registered in smtp_service.cmake.)
rp_unit_test(bench_test
  SOURCES unit/bench_histogram_test.cc unit/bench_smtp_test.cc unit/bench_access_test.cc
  LIBS rp_bench_client)
rp_integration_test(bench_smoke SCRIPT integration/test_bench_smoke.py TIMEOUT 180 LABELS bench)
rp_integration_test(bench_access SCRIPT integration/test_bench_access.py TIMEOUT 240 LABELS bench)
rp_integration_test(bench_relay SCRIPT integration/test_bench_relay.py TIMEOUT 180 LABELS bench)
