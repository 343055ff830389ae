#!/usr/bin/env bash
# Builds gsoft with clang, AddressSanitizer, UndefinedBehaviorSanitizer and libFuzzer coverage in
# ./build-sanitize: the library, CLI and tests (scripts/sanitize.sh runs them) and the fuzz
# targets (scripts/fuzz.sh). Extra arguments go to the CMake configure step.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --sanitizers
jobs=$(nproc 2>/dev/null || echo 2)
# libtorch runs on GCC's OpenMP runtime; clang's -fopenmp would load LLVM's as a second one. With
# -fopenmp=libgomp clang links GCC's and compiles gsoft's own at::parallel_for loops serially.
gomp=$(g++ -print-file-name=libgomp.so)
cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=clang++ -DGSOFT_BUILD_PYTHON=OFF \
  -DGSOFT_FUZZ=ON -DGSOFT_BUILD_BENCH=OFF \
  -DOpenMP_CXX_FLAGS=-fopenmp=libgomp -DOpenMP_CXX_LIB_NAMES=gomp "-DOpenMP_gomp_LIBRARY=$gomp" "$@"
cmake --build build-sanitize -j "$jobs"
