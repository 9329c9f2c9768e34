# bench/imap.cmake: IMAP micro-benchmarks (parser, FETCH response generation, MIME).
add_executable(bench_imap bench_imap.cc)
target_link_libraries(bench_imap PRIVATE rp_imap benchmark::benchmark)
