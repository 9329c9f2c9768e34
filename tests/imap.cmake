# tests/imap.cmake: IMAP protocol tests (protocols/imap).
rp_unit_test(imap_test
  SOURCES unit/imap_parser_test.cc unit/imap_mime_test.cc unit/imap_server_test.cc
  LIBS rp_imap)

rp_unit_test(imap_golden_test
  SOURCES unit/imap_golden_test.cc
  LIBS rp_imap
  LABELS golden)
target_compile_definitions(imap_golden_test PRIVATE
  RP_GOLDEN_DIR="${CMAKE_SOURCE_DIR}/tests/golden/imap")

rp_fuzz_target(fuzz_imap_parser
  SOURCES fuzz/fuzz_imap_parser.cc
  LIBS rp_imap
  CORPUS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/imap_parser)

rp_fuzz_target(fuzz_imap_mime
  SOURCES fuzz/fuzz_imap_mime.cc
  LIBS rp_imap
  CORPUS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/imap_mime)

rp_fuzz_target(fuzz_imap_session
  SOURCES fuzz/fuzz_imap_session.cc
  LIBS rp_imap
  CORPUS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/imap_session)
