# bench/misc.cmake: micro-benchmarks of the checksum, record sealing/verifying and
# ringpost-bench's own response readers (see bench_misc.cc).
add_executable(bench_misc bench_misc.cc)
target_link_libraries(bench_misc PRIVATE rp_storage rp_bench_client benchmark::benchmark)
