# bench: Google Benchmark micro-benchmarks (bench_<module>.cc) and comparison scripts.
