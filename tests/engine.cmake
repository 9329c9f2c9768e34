# Engine (core/ reactor, buffers, sessions, shards, cross-core) and ringpostd tests.
rp_unit_test(engine_test
  SOURCES unit/reactor_test.cc unit/buffer_pool_test.cc unit/cross_core_test.cc
          unit/session_test.cc
  LIBS rp_core)
rp_integration_test(engine_integration SCRIPT integration/test_engine.py TIMEOUT 300 SANITIZE)
