#!/usr/bin/env bash
# Installs everything gsoft needs from Debian packages and makes OpenBLAS the BLAS that libtorch
# loads. Idempotent: a second run checks and changes nothing.
set -euo pipefail

PACKAGES=(
  cmake g++ make
  libtorch-dev          # tensors, autograd, optimisers (1.13 on Debian 12)
  libopenblas-dev       # fast BLAS; the reference BLAS is ~10x slower
  libopenblas0-openmp   # OpenBLAS on OpenMP: shares libtorch's thread pool (see below)
  libicu-dev            # Unicode for the tokenizers
  zlib1g-dev            # gzipped IDX image files
  libpng-dev            # PNG images of the diffusion tools
  dataset-fashion-mnist # the LipConvNet data (gzipped IDX, 30 MB)
  libgtest-dev libbenchmark-dev nlohmann-json3-dev libcli11-dev
  libgloo-dev           # c10d's Gloo headers: data-parallel training (--nproc, docs/distributed.md)
  # The Python module (import gsoft): the same libtorch 1.13 as libtorch-dev, for Debian's python3
  python3-torch python3-dev pybind11-dev python3-pytest
)

# `--sanitizers`: also clang and its sanitizer and libFuzzer runtimes (scripts/sanitize.sh, fuzz.sh).
if [ "${1:-}" = "--sanitizers" ]; then
  PACKAGES+=(clang libclang-rt-14-dev)
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# libtorch links libblas.so.3, liblapack.so.3 and libopenblas.so.0; the alternatives system decides
# what they are. Use the OpenMP build of OpenBLAS: the pthread build keeps its own workers spinning
# after each call, which fight libtorch's OpenMP threads for the cores (measured on 2 cores: the
# authors' bmm backward swung between 180 and 520 ms instead of a steady 80 ms).
arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
for lib in libblas.so.3 liblapack.so.3 libopenblas.so.0; do
  name="${lib}-${arch}"
  want="/usr/lib/${arch}/openblas-openmp/${lib}"
  current=$(update-alternatives --query "$name" 2>/dev/null | sed -n 's/^Value: //p')
  if [ "$current" != "$want" ]; then
    echo "setup: selecting the OpenMP build of OpenBLAS for ${lib}"
    $SUDO update-alternatives --set "$name" "$want"
  fi
done

# The main job's task data: Pang & Lee's sentence polarity set (and their full-review corpus, used
# to pretrain the shipped encoder), from Debian's python3-pattern package. Only the two CSV files
# are extracted; the package is not installed (it would pull in nltk, scipy and more).
DATA_DIR="$(cd "$(dirname "$0")/.." && pwd)/data/polarity"
SENTENCES="$DATA_DIR/polarity-en-pang&lee2.csv"
REVIEWS="$DATA_DIR/polarity-en-pang&lee1.csv"
if [ ! -s "$SENTENCES" ] || [ ! -s "$REVIEWS" ]; then
  echo "setup: fetching the Pang & Lee polarity data (Debian python3-pattern, 16 MB download)"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  ( cd "$tmp" && { apt-get download python3-pattern >/dev/null 2>&1 ||
                   { $SUDO apt-get update -qq && apt-get download python3-pattern >/dev/null; }; } )
  mkdir -p "$DATA_DIR"
  src='./usr/share/doc/python3-pattern/test/corpora'
  dpkg-deb --fsys-tarfile "$tmp"/python3-pattern_*.deb |
    tar -x -C "$tmp" "$src/polarity-en-pang&lee2.csv" "$src/polarity-en-pang&lee1.csv"
  mv "$tmp/$src/polarity-en-pang&lee2.csv" "$SENTENCES.tmp" && mv "$SENTENCES.tmp" "$SENTENCES"
  mv "$tmp/$src/polarity-en-pang&lee1.csv" "$REVIEWS.tmp" && mv "$REVIEWS.tmp" "$REVIEWS"
fi
echo "setup: ok"
