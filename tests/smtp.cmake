# tests/smtp.cmake: SMTP protocol tests (protocols/common + protocols/smtp).
rp_unit_test(smtp_test
  SOURCES unit/line_reader_test.cc unit/data_decoder_test.cc unit/smtp_address_test.cc
          unit/smtp_command_test.cc unit/smtp_server_test.cc
  LIBS rp_smtp)

rp_unit_test(smtp_golden_test
  SOURCES unit/smtp_golden_test.cc
  LIBS rp_smtp
  LABELS golden)
target_compile_definitions(smtp_golden_test PRIVATE
  RP_GOLDEN_DIR="${CMAKE_SOURCE_DIR}/tests/golden/smtp")

rp_fuzz_target(fuzz_smtp_command
  SOURCES fuzz/fuzz_smtp_command.cc
  LIBS rp_smtp
  CORPUS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/smtp_command)

rp_fuzz_target(fuzz_smtp_session
  SOURCES fuzz/fuzz_smtp_session.cc
  LIBS rp_smtp
  CORPUS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/smtp_session)
