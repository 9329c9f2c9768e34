# bench/tls.cmake: TLS (core/tls) handshakes and records, and SCRAM-SHA-256 verification.
add_executable(bench_tls bench_tls.cc)
target_link_libraries(bench_tls PRIVATE rp_sasl rp_core benchmark::benchmark)
