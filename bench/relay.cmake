# bench/relay.cmake: the relay's pure pieces (DNS codec, MX logic, SMTP client, dot-stuffing).
add_executable(bench_dns bench_dns.cc)
target_link_libraries(bench_dns PRIVATE rp_relay benchmark::benchmark)
