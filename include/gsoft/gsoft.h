#pragma once
// Umbrella header for the gsoft library.
#include "gsoft/core/error.h"
#include "gsoft/core/runtime.h"
#include "gsoft/gs/chain.h"
#include "gsoft/gs/functional.h"
#include "gsoft/gs/gs_orthogonal.h"
#include "gsoft/gs/permutation.h"
#include "gsoft/gs/projection.h"
#include "gsoft/io/atomic_file.h"
#include "gsoft/io/safetensors.h"
#include "gsoft/ortho/block_maps.h"
#include "gsoft/version.h"
