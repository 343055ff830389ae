// gsoft._C: the C++ core for Python. Tensors cross without copies through torch's own casters, so
// autograd graphs built here are the ones Python's backward() runs. The library's
// std::invalid_argument (bad shapes, bad configs) arrives as ValueError, other errors as
// RuntimeError, each with the C++ message. The Python package (python/gsoft/*.py) builds the
// nn.Module layer on top; this file only exposes the library.
#include <pybind11/stl.h>
#include <torch/extension.h>

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "gsoft/adapters/adapter.h"
#include "gsoft/adapters/config.h"
#include "gsoft/adapters/inject.h"
#include "gsoft/core/error.h"
#include "gsoft/core/runtime.h"
#include "gsoft/gs/chain.h"
#include "gsoft/gs/functional.h"
#include "gsoft/io/adapter_io.h"
#include "gsoft/io/safetensors.h"
#include "gsoft/ortho/block_maps.h"
#include "gsoft/version.h"

namespace py = pybind11;
using namespace gsoft;

namespace {

using Shape3 = std::tuple<int64_t, int64_t, int64_t>;

BlockDiagShape shape_of(const Shape3& s) { return {std::get<0>(s), std::get<1>(s), std::get<2>(s)}; }
Shape3 tuple_of(const BlockDiagShape& s) { return {s.nblocks, s.block_rows, s.block_cols}; }

BlockDiagShape block_shape(const torch::Tensor& t, const char* what) {
  GSOFT_CHECK(t.dim() == 3, what, " must be a 3-D (nblocks, rows, cols) tensor, got shape ", format_shape(t.sizes()));
  return {t.size(0), t.size(1), t.size(2)};
}

// A bad config is a ValueError in Python, whichever exception the JSON reader uses.
AdapterConfig config_of(const std::string& json) {
  try {
    return io::adapter_config_from_json(json, "adapter config");
  } catch (const std::invalid_argument&) {
    throw;
  } catch (const std::exception& e) {
    throw std::invalid_argument(e.what());
  }
}

// The authors' GS product with blocks given directly: R applied first, then L.
GSChain multiply_chain(const torch::Tensor& L, const torch::Tensor& R, const std::string& layout) {
  const auto l = block_shape(L, "blocks_L"), r = block_shape(R, "blocks_R");
  if (layout_from_string(layout) == Layout::Official) return butterfly_multiply_chain(r, l);
  GSOFT_CHECK(l == r && l.block_rows == l.block_cols, "gs_multiply: layout 'paper' needs square blocks of one shape, "
              "got blocks_L ", format_shape(L.sizes()), " and blocks_R ", format_shape(R.sizes()));
  return gs_orthogonal_chain(l.cols(), l.nblocks, Layout::Paper);
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "gsoft's C++ core (fused GS kernels, orthogonal block maps, adapters, PEFT files)";
  m.attr("__version__") = GSOFT_VERSION;

  // ------------------------------------------------------------------ GS chains
  py::class_<GSChain>(m, "Chain", "A = P_m B_{m-1} P_{m-1} ... B_0 P_0 with block-diagonal B_i (rows are x @ A^T)")
      .def(py::init([](std::vector<std::vector<int64_t>> perms, const std::vector<Shape3>& factors) {
             std::vector<Permutation> p;
             for (auto& s : perms) p.emplace_back(std::move(s));
             std::vector<BlockDiagShape> f;
             for (const auto& s : factors) f.push_back(shape_of(s));
             return GSChain(std::move(p), std::move(f));
           }),
           py::arg("perms"), py::arg("factors"),
           "General chain: perms[i] (gather indices, y[j] = x[perm[j]]) before factor i, one more at the end; "
           "factors[i] = (nblocks, block_rows, block_cols)")
      .def_static("gs_orthogonal", [](int64_t n, int64_t nblocks, const std::string& layout) {
            return gs_orthogonal_chain(n, nblocks, layout_from_string(layout));
          }, py::arg("n"), py::arg("nblocks"), py::arg("layout") = "official")
      .def_static("butterfly", [](const Shape3& w1, const Shape3& w2) {
            return butterfly_multiply_chain(shape_of(w1), shape_of(w2));
          }, py::arg("w1_shape"), py::arg("w2_shape"))
      .def_static("boft", &boft_chain, py::arg("n"), py::arg("block_size"), py::arg("n_butterfly_factor"))
      .def_static("shuffle", &gs_shuffle_chain, py::arg("n"), py::arg("nblocks"), py::arg("m"))
      .def_property_readonly("in_features", &GSChain::in_features)
      .def_property_readonly("out_features", &GSChain::out_features)
      .def_property_readonly("num_factors", &GSChain::num_factors)
      .def_property_readonly("num_parameters", &GSChain::num_parameters)
      .def_property_readonly("density", &GSChain::density)
      .def_property_readonly("factors", [](const GSChain& c) {
        std::vector<Shape3> out;
        for (const auto& f : c.factors()) out.push_back(tuple_of(f));
        return out;
      })
      .def_property_readonly("perms", [](const GSChain& c) {
        std::vector<std::vector<int64_t>> out;
        for (const auto& p : c.perms()) out.push_back(p.sigma());
        return out;
      })
      .def("apply", &functional::gs_apply, py::arg("x"), py::arg("blocks"),
           "Rows of x times A^T through the fused kernel (float32/float64 CPU; other devices unfused)",
           py::call_guard<py::gil_scoped_release>())
      .def("apply_transpose", &functional::gs_apply_transpose, py::arg("x"), py::arg("blocks"),
           py::call_guard<py::gil_scoped_release>())
      .def("apply_unfused", &functional::gs_apply_unfused, py::arg("x"), py::arg("blocks"))
      .def("dense", &functional::gs_dense, py::arg("blocks"))
      .def("__repr__", &GSChain::describe);

  m.def("gs_multiply", [](const torch::Tensor& x, const torch::Tensor& L, const torch::Tensor& R,
                          const std::string& layout) {
        const auto chain = multiply_chain(L, R, layout);
        py::gil_scoped_release release;
        return functional::gs_apply(chain, x, {R, L});
      }, py::arg("x"), py::arg("blocks_L"), py::arg("blocks_R"), py::arg("layout") = "official");
  m.def("reference_butterfly_multiply", &functional::reference_butterfly_multiply, py::arg("x"), py::arg("w1"),
        py::arg("w2"));
  m.def("orthogonal_blocks", [](const torch::Tensor& a, const std::string& method, int64_t terms) {
        return functional::orthogonal_blocks(a, parametrization_from_string(method), terms);
      }, py::arg("a"), py::arg("method") = "cayley", py::arg("neumann_terms") = 5);
  m.def("orthogonality_error", &functional::orthogonality_error, py::arg("blocks"));
  m.def("keep_freed_memory", &keep_freed_memory,
        "glibc only: serve allocations from the heap and keep freed memory for reuse, so a training loop's\n"
        "re-allocated activations do not come back through page faults every step. Returns whether it applied.");

  // ------------------------------------------------------------------ adapters
  py::class_<LinearAdapter, std::shared_ptr<LinearAdapter>>(m, "LinearAdapter")
      .def_property_readonly("method", [](const LinearAdapter& a) { return to_string(a.method()); })
      .def("named_parameters", &LinearAdapter::named_parameters)
      .def("set_parameter", &LinearAdapter::set_parameter, py::arg("name"), py::arg("tensor"))
      .def("num_parameters", &LinearAdapter::num_parameters)
      .def("forward", [](const LinearAdapter& a, const torch::Tensor& x, const torch::Tensor& weight,
                         const std::optional<torch::Tensor>& bias, bool training) {
             py::gil_scoped_release release;
             return a.forward(x, weight, bias.value_or(torch::Tensor()), training);
           }, py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("training"))
      .def("adapted_weight", &LinearAdapter::adapted_weight, py::arg("weight"), py::arg("training"))
      .def("merged_weight", &LinearAdapter::merged_weight, py::arg("weight"))
      .def("unmerged_weight", &LinearAdapter::unmerged_weight, py::arg("merged"));
  m.def("make_linear_adapter", [](const std::string& config, int64_t in, int64_t out, const std::string& name) {
        return make_linear_adapter(config_of(config), in, out, name);
      }, py::arg("config"), py::arg("in_features"), py::arg("out_features"), py::arg("module_name") = "");
  m.def("normalize_config", [](const std::string& json) { return io::adapter_config_to_json(config_of(json)); },
        py::arg("config"), "adapter_config.json text with every field and default, after validation");
  m.def("is_target", [](const std::string& config, const std::string& name) { return is_target(config_of(config), name); },
        py::arg("config"), py::arg("module_name"));
  m.def("name_matches_suffix", &name_matches_suffix, py::arg("name"), py::arg("suffix"));
  m.def("parameter_prefix", [](const std::string& method) { return parameter_prefix(method_from_string(method)); });

  py::class_<AdaptedModule>(m, "AdaptedModule")
      .def(py::init([](std::string name, int64_t in, int64_t out, int64_t params) {
             return AdaptedModule{std::move(name), in, out, params};
           }), py::arg("name"), py::arg("in_features"), py::arg("out_features"), py::arg("trainable_params"))
      .def_readonly("name", &AdaptedModule::name)
      .def_readonly("in_features", &AdaptedModule::in_features)
      .def_readonly("out_features", &AdaptedModule::out_features)
      .def_readonly("trainable_params", &AdaptedModule::trainable_params);
  py::class_<InjectionReport>(m, "InjectionReport", "What inject() adapted, as the C++ injection reports it")
      .def(py::init<>())
      .def_readwrite("adapted", &InjectionReport::adapted)
      .def_readwrite("saved_modules", &InjectionReport::saved_modules)
      .def_readwrite("adapter_params", &InjectionReport::adapter_params)
      .def_readwrite("trainable_params", &InjectionReport::trainable_params)
      .def_readwrite("total_params", &InjectionReport::total_params)
      .def("to_string", &InjectionReport::to_string)
      .def("__str__", &InjectionReport::to_string);

  // ------------------------------------------------------------------ files
  m.def("read_safetensors", [](const std::string& path) {
        auto f = io::read_safetensors(path);
        return py::make_tuple(f.tensors, f.metadata);
      }, py::arg("path"));
  m.def("write_safetensors", &io::write_safetensors, py::arg("path"), py::arg("tensors"),
        py::arg("metadata") = std::map<std::string, std::string>{});
  m.def("read_adapter", [](const std::string& dir) {
        auto a = io::read_adapter(dir);
        return py::make_tuple(io::adapter_config_to_json(a.config), a.tensors);
      }, py::arg("dir"), "(adapter_config.json text, {file key: tensor}) after validation");
  m.def("write_adapter", [](const std::string& dir, const std::map<std::string, torch::Tensor>& tensors,
                            const std::string& config) { io::write_adapter(dir, tensors, config_of(config)); },
        py::arg("dir"), py::arg("tensors"), py::arg("config"));
  m.def("merge", [](const std::string& base, const std::string& adapter, const std::string& out) {
        auto r = io::merge_to(base, adapter, out);
        py::dict d;
        d["merged_modules"] = r.merged_modules;
        d["saved_modules_tensors"] = r.saved_modules_tensors;
        d["copied_tensors"] = r.copied_tensors;
        return d;
      }, py::arg("base"), py::arg("adapter_dir"), py::arg("out"), "What `gsoft merge` does");
  m.attr("PEFT_KEY_PREFIX") = io::kPeftKeyPrefix;
}
