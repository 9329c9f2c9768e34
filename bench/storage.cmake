# bench: storage micro-benchmarks (see bench_storage.cc and storage_vs_dd.sh).
add_executable(bench_storage bench_storage.cc)
target_link_libraries(bench_storage PRIVATE rp_storage benchmark::benchmark)
