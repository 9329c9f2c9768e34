# Configuration parsing and checks (config/).
rp_unit_test(config_test
  SOURCES unit/config_test.cc
  LIBS rp_config)
target_compile_definitions(config_test PRIVATE RP_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
