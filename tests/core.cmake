rp_unit_test(core_test
  SOURCES unit/checksum_test.cc unit/result_test.cc unit/sync_io_test.cc
  LIBS rp_core)
