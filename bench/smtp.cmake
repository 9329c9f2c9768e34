# bench/smtp.cmake: SMTP protocol micro-benchmarks (parsers and the server state machine).
add_executable(bench_smtp bench_smtp.cc)
target_link_libraries(bench_smtp PRIVATE rp_smtp benchmark::benchmark)
