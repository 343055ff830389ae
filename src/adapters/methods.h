#pragma once
// Factories of the adapter methods (internal): registry.cpp dispatches to these.
#include <memory>
#include <string>

#include "gsoft/adapters/adapter.h"

namespace gsoft::adapters {

// gsoft and double_gsoft.
std::shared_ptr<LinearAdapter> make_gsoft(const AdapterConfig& c, int64_t in, int64_t out, const std::string& name);
std::shared_ptr<LinearAdapter> make_oft(const AdapterConfig& c, int64_t in, int64_t out, const std::string& name);
std::shared_ptr<LinearAdapter> make_boft(const AdapterConfig& c, int64_t in, int64_t out, const std::string& name);
std::shared_ptr<LinearAdapter> make_lora(const AdapterConfig& c, int64_t in, int64_t out, const std::string& name);

// Number of blocks for a side of `features` from the config's block_size / nblocks; throws
// naming the module when it does not divide.
int64_t resolve_nblocks(const AdapterConfig& c, int64_t features, const std::string& name, const char* side);

}  // namespace gsoft::adapters
