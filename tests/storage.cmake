# storage: unit tests, simulated faults, the SIGKILL crash test and the segment fuzz target.
add_library(rp_storage_sim STATIC sim/sim_io.cc)
target_link_libraries(rp_storage_sim PUBLIC rp_storage)

rp_unit_test(storage_test
  SOURCES unit/storage_record_test.cc unit/storage_store_test.cc
  LIBS rp_storage rp_storage_sim
  TIMEOUT 120)
