# tests/pop3.cmake: POP3 (protocols/pop3) and the mailbox-access layer (protocols/common/mail_access).
rp_unit_test(pop3_test
  SOURCES unit/pop3_server_test.cc unit/pop3_golden_test.cc
  LIBS rp_pop3)
target_include_directories(pop3_test PRIVATE ${CMAKE_SOURCE_DIR})
target_compile_definitions(pop3_test PRIVATE
  RP_GOLDEN_DIR_POP3="${CMAKE_SOURCE_DIR}/tests/golden/pop3")

rp_fuzz_target(fuzz_pop3_session
  SOURCES fuzz/fuzz_pop3_session.cc
  LIBS rp_pop3
  CORPUS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/pop3_session)
target_include_directories(fuzz_pop3_session PRIVATE ${CMAKE_SOURCE_DIR})

# POP3 against the real daemon: poplib, smtplib, curl, fetchmail; multi-shard mail_access.
rp_integration_test(pop3_integration SCRIPT integration/test_pop3.py TIMEOUT 600 SANITIZE)

# Zero-copy RETR and FETCH BODY[] (splice from the segment), byte-exact under concurrent
# sessions and while another session expunges and the upkeep compacts; the path taken is read
# from the daemon's shutdown stats line.
rp_integration_test(access_splice_integration SCRIPT integration/test_access_splice.py TIMEOUT 300 SANITIZE)

# Real mail clients over TLS: fetchmail, mbsync (isync), curl pop3/imap URLs.
rp_integration_test(mail_clients_integration SCRIPT integration/test_mail_clients.py TIMEOUT 300)

# The POP3/IMAP password checker on a real engine with a real hash pool.
rp_unit_test(pop3_login_checker_test
  SOURCES unit/pop3_login_checker_test.cc
  LIBS rp_mail_service)

# mail_access on a real 2-shard engine with a store per shard.
rp_unit_test(mail_access_test
  SOURCES unit/mail_access_test.cc
  LIBS rp_mail_service)
