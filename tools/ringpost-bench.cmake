# tools/ringpost-bench.cmake: ringpost-bench, the load generator (an independent client: it
# links core's basics, liburing and wolfSSL, never the server's protocol code).
add_library(rp_bench_client STATIC
  bench/bench_access.cc
  bench/bench_access_run.cc
  bench/bench_histogram.cc
  bench/bench_loop.cc
  bench/bench_options.cc
  bench/bench_report.cc
  bench/bench_run.cc
  bench/bench_relay.cc
  bench/bench_smtp.cc
  bench/bench_text.cc
  bench/bench_tls.cc
)
target_link_libraries(rp_bench_client PUBLIC rp_core PkgConfig::URING PkgConfig::WOLFSSL Threads::Threads)

add_executable(ringpost-bench bench/ringpost_bench_main.cc)
target_link_libraries(ringpost-bench PRIVATE rp_bench_client)
