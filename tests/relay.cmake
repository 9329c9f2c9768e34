# tests/relay.cmake: relay tests (protocols/dns, mx_resolver, smtp_client, dsn, relay_agent).
rp_unit_test(dns_test
  SOURCES unit/dns_codec_test.cc unit/dns_client_test.cc
  LIBS rp_relay)
target_include_directories(dns_test PRIVATE ${CMAKE_SOURCE_DIR})

rp_fuzz_target(fuzz_dns_answer
  SOURCES fuzz/fuzz_dns_answer.cc
  LIBS rp_relay
  CORPUS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/dns_answer)

rp_unit_test(smtp_client_test
  SOURCES unit/smtp_client_test.cc unit/dsn_test.cc unit/destination_limits_test.cc
  LIBS rp_relay)

rp_fuzz_target(fuzz_smtp_client
  SOURCES fuzz/fuzz_smtp_client.cc
  LIBS rp_relay
  CORPUS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/smtp_client)

# Real dnsmasq and smtp-sink on loopback addresses (127.0.0.2 ...).
rp_integration_test(relay_integration SCRIPT integration/test_relay.py TIMEOUT 600)

rp_unit_test(relay_connector_test
  SOURCES unit/relay_connector_test.cc
  LIBS rp_core)

# kill -9 with 1,000 messages queued, then again while delivering (real dnsmasq, smtp-sink).
rp_integration_test(relay_crash_integration SCRIPT integration/test_relay_crash.py TIMEOUT 300)

# Outbound STARTTLS against a second ringpostd; the resolv.conf default for [dns] resolvers.
rp_integration_test(relay_tls_integration SCRIPT integration/test_relay_tls.py TIMEOUT 300 SANITIZE)

# core/tls_client against core/tls's server stream, in memory (opportunistic and verify).
rp_unit_test(tls_client_test
  SOURCES unit/tls_client_test.cc
  LIBS rp_core)

# Connection reuse, the per-destination limit over all shards, TLS "may" after a failed
# handshake, BODY=8BITMIME (real dnsmasq, smtp-sink and a scripted SMTP server).
rp_integration_test(relay_limits_integration SCRIPT integration/test_relay_limits.py TIMEOUT 300 SANITIZE)
