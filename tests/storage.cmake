# storage: unit tests, simulated faults, the SIGKILL crash test and the segment fuzz target.
add_library(rp_storage_sim STATIC sim/sim_io.cc)
target_link_libraries(rp_storage_sim PUBLIC rp_storage)

rp_unit_test(storage_test
  SOURCES unit/storage_record_test.cc unit/storage_store_test.cc unit/storage_overlap_test.cc
  LIBS rp_storage rp_storage_sim
  TIMEOUT 120)

# Simulated faults: seeded; a failure prints the seed, --seed=N --rounds=1 replays it.
add_executable(storage_sim_test sim/storage_sim_test.cc)
target_link_libraries(storage_sim_test PRIVATE rp_storage_sim)
add_test(NAME storage_sim_test COMMAND storage_sim_test --seed=1 --rounds=40)
set_tests_properties(storage_sim_test PROPERTIES LABELS "unit;sanitize;sim" TIMEOUT 300)

# SIGKILL crash test: a child appends and syncs, the parent kills it and checks the store.
add_executable(storage_crash_child sim/storage_crash_child.cc)
target_link_libraries(storage_crash_child PRIVATE rp_storage)
add_executable(storage_crash_test sim/storage_crash_test.cc)
target_link_libraries(storage_crash_test PRIVATE rp_storage)
add_dependencies(storage_crash_test storage_crash_child)
add_test(NAME storage_crash_test COMMAND storage_crash_test --rounds=50)
set_tests_properties(storage_crash_test PROPERTIES LABELS "unit;sanitize;crash" TIMEOUT 300)

rp_fuzz_target(fuzz_segment
  SOURCES fuzz/fuzz_segment.cc
  LIBS rp_storage
  CORPUS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/segment)
# The daemon's store upkeep: its pure rules, then the whole of it against a running daemon.
rp_unit_test(store_upkeep_test SOURCES unit/store_upkeep_test.cc LIBS rp_mail_service)
rp_integration_test(store_upkeep_integration SCRIPT integration/test_store_upkeep.py TIMEOUT 180 SANITIZE)
