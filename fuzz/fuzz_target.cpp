// One libFuzzer target per reader: GSOFT_FUZZ_READER names its entry in readers.cpp.
#include <ATen/Parallel.h>

#include "readers.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  at::set_num_threads(1);  // scripts/fuzz.sh runs one target per core
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const gsoft::fuzz::Reader& reader = gsoft::fuzz::find_reader(GSOFT_FUZZ_READER);
  gsoft::fuzz::feed(reader, data, size);
  return 0;
}
