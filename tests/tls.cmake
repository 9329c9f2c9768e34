# tests/tls.cmake: TLS and authentication (core/tls, protocols/auth, SMTP AUTH/STARTTLS).
rp_unit_test(tls_stream_test
  SOURCES unit/tls_stream_test.cc
  LIBS rp_core)

rp_unit_test(auth_test
  SOURCES unit/auth_sasl_test.cc unit/auth_store_test.cc unit/auth_smtp_test.cc
  LIBS rp_auth rp_smtp)

rp_fuzz_target(fuzz_sasl
  SOURCES fuzz/fuzz_sasl.cc
  LIBS rp_sasl
  CORPUS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/sasl)

rp_integration_test(integration_tls SCRIPT integration/test_tls.py LABELS tls SANITIZE)

rp_unit_test(auth_scram_test
  SOURCES unit/auth_scram_test.cc
  LIBS rp_sasl)
