#!/usr/bin/env bash
# tools/build.sh KIND: configures and builds one build tree.
#   release  -> build/       g++, RelWithDebInfo, warnings as errors
#   asan     -> build-asan/  clang, ASan+UBSan, fuzz targets linked with libFuzzer
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-release}
jobs=$(nproc)
case "$kind" in
  release)
    cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_CXX_COMPILER=g++ -DCMAKE_C_COMPILER=gcc >/dev/null
    cmake --build build -j "$jobs"
    ;;
  asan)
    cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DRP_SANITIZE=ON -DRP_FUZZ=ON \
      -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang >/dev/null
    cmake --build build-asan -j "$jobs"
    ;;
  *)
    echo "usage: tools/build.sh release|asan" >&2
    exit 2
    ;;
esac
