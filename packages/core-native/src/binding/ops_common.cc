#include "ops_common.h"

#include "../runtime/backends.h"
#include "../runtime/cpu_features.h"

namespace lora::binding {

Placement resolve_placement(const std::string& backend, const std::vector<std::pair<std::string, Device>>& tensors) {
  const std::pair<std::string, Device>* first_cuda = nullptr;
  for (const auto& t : tensors) {
    if (t.second.kind == DeviceKind::CUDA) {
      first_cuda = &t;
      break;
    }
  }
  Placement p;
  p.backend = backend;
  if (backend == "auto") p.backend = first_cuda ? "cuda" : cpu_features().has_avx512_backend() ? "cpu" : "ref";
  if (p.backend == "cuda") {
    p.device = first_cuda ? first_cuda->second : Device{DeviceKind::CUDA, 0};
    for (const auto& t : tensors) {
      const char* n = t.first.c_str();
      if (t.second.kind != DeviceKind::CUDA) {
        throw Error(LORA_ERR_DEVICE, t.first + ": backend 'cuda' takes tensors on a CUDA device, got " + device_name(t.second) +
                    " (copy it with .to('" + device_name(p.device) + "'))", n);
      }
      if (t.second != p.device) {
        throw Error(LORA_ERR_DEVICE, t.first + ": on " + device_name(t.second) + " but '" + first_cuda->first + "' is on " + device_name(p.device) +
                    "; every tensor of a 'cuda' op must be on the same device", n);
      }
    }
    return p;
  }
  p.device = Device{};
  for (const auto& t : tensors) {
    if (!t.second.is_host_memory()) {
      throw Error(LORA_ERR_DEVICE, t.first + ": backend '" + p.backend + "' takes host tensors ('cpu' or 'emu'), got " + device_name(t.second) +
                  " (run the op with backend 'cuda', or copy the tensor with .to('cpu'))", t.first);
    }
  }
  return p;
}

const ops::OpTable& pick_backend(const Args& a, size_t i, const char* op, const std::vector<DType>& dtypes,
                                 const std::vector<int64_t>& sizes) {
  const std::string asked = a.has(i) ? a.string(i, "backend") : "auto";
  std::string reason;
  // A named backend is looked up first, so that asking for an unusable one (no GPU) says so
  // before anything is said about where the tensors are.
  const ops::OpTable* t = nullptr;
  if (asked != "auto") {
    t = ops::find_backend(asked, &reason);
    if (!t) throw Error(LORA_ERR_UNSUPPORTED, std::string(op) + ": backend '" + asked + "' not supported: " + reason, "backend");
  }
  const Placement pl = resolve_placement(asked, a.seen());
  if (!t) {
    t = ops::find_backend(pl.backend, &reason);
    if (!t) throw Error(LORA_ERR_UNSUPPORTED, std::string(op) + ": backend '" + pl.backend + "' (auto) not supported: " + reason, "backend");
  }
  const ops::Support s = t->supports(op, dtypes, sizes);
  if (!s.ok) throw Error(LORA_ERR_UNSUPPORTED, std::string(op) + ": not supported by backend '" + pl.backend + "': " + s.reason, "backend");
  a.set_op_device(pl.device);
  return *t;
}

ops::Ctx op_ctx(const Args& a, const ops::OpTable& t) { return ops::context_for(t, a.op_device()); }

HostI32::HostI32(const Tensor& t, const int32_t* data, int64_t n) : p_(data) {
  if (t.device().is_host_memory() || n <= 0) return;
  copy_.resize(static_cast<size_t>(n));
  copy_bytes(Device{}, copy_.data(), t.device(), data, static_cast<size_t>(n) * sizeof(int32_t));
  p_ = copy_.data();
}

void expect_host(const Tensor& t, const char* name) {
  // 'emu' tensors are host memory too (the emulator's own allocator), so every host backend takes them.
  if (t.device().kind != DeviceKind::CPU && t.device().kind != DeviceKind::EMU) {
    throw Error(LORA_ERR_DEVICE, std::string(name) + ": this op takes host tensors ('cpu' or 'emu'), got " + device_name(t.device()), name);
  }
}

void expect_dtype_in(const Tensor& t, std::initializer_list<DType> ok, const char* name) {
  std::string list;
  for (DType d : ok) {
    if (d == t.dtype) return;
    list += list.empty() ? dtype_name(d) : std::string(" or ") + dtype_name(d);
  }
  throw Error(LORA_ERR_DTYPE, std::string(name) + ": expected dtype " + list + ", got " + dtype_name(t.dtype), name);
}

MatView matrix_view(const Tensor& t, const char* name) {
  if (dtype_is_weight_only(t.dtype)) throw Error(LORA_ERR_DTYPE, std::string(name) + ": " + dtype_name(t.dtype) + " tensors are weights, not activations", name);
  const int r = t.rank();
  if (r == 0) throw Error(LORA_ERR_SHAPE, std::string(name) + ": expected at least one dimension", name);
  MatView v;
  v.cols = t.shape[r - 1];
  v.rows = 1;
  for (int i = 0; i < r - 1; ++i) v.rows *= t.shape[i];
  if (v.cols > 1 && t.strides[r - 1] != 1) throw Error(LORA_ERR_SHAPE, std::string(name) + ": the last dimension must be contiguous (stride 1)", name);
  v.ld = r >= 2 ? t.strides[r - 2] : v.cols;
  if (r >= 2 && t.shape[r - 2] == 1) v.ld = v.cols;
  for (int i = r - 3; i >= 0; --i) {
    if (t.shape[i] != 1 && t.strides[i] != t.strides[i + 1] * t.shape[i + 1]) {
      throw Error(LORA_ERR_SHAPE, std::string(name) + ": leading dimensions must be laid out as rows of one matrix (use a contiguous tensor)", name);
    }
  }
  if (v.ld < v.cols) throw Error(LORA_ERR_SHAPE, std::string(name) + ": overlapping rows (row stride < row length)", name);
  return v;
}

static void expect_matrix(const MatView& v, const char* name, int64_t rows, int64_t cols) {
  if (v.rows != rows || v.cols != cols) {
    throw Error(LORA_ERR_SHAPE, std::string(name) + ": expected " + std::to_string(rows) + " rows x " + std::to_string(cols) +
                " columns (leading dims flattened), got " + std::to_string(v.rows) + " x " + std::to_string(v.cols), name);
  }
}

ops::Mat as_mat(const Tensor& t, const char* name, int64_t rows, int64_t cols) {
  expect_dtype_in(t, {DType::F32, DType::BF16}, name);
  const MatView v = matrix_view(t, name);
  expect_matrix(v, name, rows, cols);
  return ops::Mat{t.data(), t.dtype, v.ld};
}

ops::MutMat as_mut_mat(const Tensor& t, const char* name, int64_t rows, int64_t cols) {
  expect_dtype_in(t, {DType::F32, DType::BF16}, name);
  const MatView v = matrix_view(t, name);
  expect_matrix(v, name, rows, cols);
  return ops::MutMat{t.data(), t.dtype, v.ld};
}

ops::Dropout read_dropout(const Args& a, size_t i) {
  ops::Dropout d;
  const double p = a.number_or(i, "dropout", 0.0);
  if (p < 0.0 || p > 1.0) a.bad("dropout", "a probability in [0, 1]");
  d.p = static_cast<float>(p);
  d.seed = static_cast<uint64_t>(a.integer_or(i + 1, "seed", 0, int64_t(1) << 53, 0));
  d.offset = static_cast<uint64_t>(a.integer_or(i + 2, "offset", 0, int64_t(1) << 53, 0));
  return d;
}

uint64_t* bits_data(const Tensor& t, const char* name, int64_t n) {
  expect_dtype_in(t, {DType::I64}, name);
  const int64_t words = (n + 63) / 64;
  if (!t.is_contiguous() || t.numel() != words) {
    throw Error(LORA_ERR_SHAPE, std::string(name) + ": expected a contiguous i64 tensor of " + std::to_string(words) + " words (one bit per element of " + std::to_string(n) + "), got shape " + shape_str(t.shape), name);
  }
  return t.data_as<uint64_t>();
}

float* f32_data(const Tensor& t, const char* name, int64_t numel) {
  expect_dtype(t, DType::F32, name);
  expect_contiguous(t, name);
  if (t.numel() != numel) {
    throw Error(LORA_ERR_SHAPE, std::string(name) + ": expected " + std::to_string(numel) + " elements, got shape " + shape_str(t.shape), name);
  }
  return t.data_as<float>();
}

const int32_t* i32_data(const Tensor& t, const char* name, int64_t numel) {
  expect_dtype(t, DType::I32, name);
  expect_contiguous(t, name);
  if (t.numel() != numel) {
    throw Error(LORA_ERR_SHAPE, std::string(name) + ": expected " + std::to_string(numel) + " elements, got shape " + shape_str(t.shape), name);
  }
  return t.data_as<int32_t>();
}

ops::Weight as_weight(const Tensor& t, const char* name) {
  expect_dtype_in(t, {DType::F32, DType::F16, DType::BF16, DType::I8, DType::INT4, DType::NF4, DType::BF16P}, name);
  expect_rank(t, 2, name);
  expect_contiguous(t, name);
  if (t.dtype == DType::BF16P && !bf16p_shape_ok(t.shape[0], t.shape[1])) {
    throw Error(LORA_ERR_SHAPE, std::string(name) + ": a bf16p weight needs rows % 16 == 0 and an even row length, got " + shape_str(t.shape), name);
  }
  ops::Weight w;
  w.dtype = t.dtype;
  w.data = t.data();
  w.rows = t.shape[0];
  w.cols = t.shape[1];
  if (t.dtype == DType::I8 || dtype_is_packed4(t.dtype)) {
    if (!t.scales) throw Error(LORA_ERR_DTYPE, std::string(name) + ": a " + dtype_name(t.dtype) + " weight needs scales (make it with Tensor.fromQuantized or quantize())", name);
    const int64_t need = t.dtype == DType::I8 ? w.rows : (t.block_size > 0 ? t.numel() / t.block_size : -1);
    if (t.dtype != DType::I8 && (t.block_size <= 0 || t.block_size % 2 || w.cols % t.block_size)) {
      throw Error(LORA_ERR_SHAPE, std::string(name) + ": block size " + std::to_string(t.block_size) + " must be even and divide the row length " + std::to_string(w.cols), name);
    }
    if (t.num_scales() < need) throw Error(LORA_ERR_SHAPE, std::string(name) + ": expected " + std::to_string(need) + " scales, got " + std::to_string(t.num_scales()), name);
    if (t.scales->device() != t.device()) {
      throw Error(LORA_ERR_DEVICE, std::string(name) + ": scales on " + device_name(t.scales->device()) + " but the weight on " + device_name(t.device()), name);
    }
    w.scales = t.scales_data();
    w.block = t.dtype == DType::I8 ? w.cols : t.block_size;
  }
  return w;
}

Span span_of(const Tensor& t, const char* name) {
  const uintptr_t lo = reinterpret_cast<uintptr_t>(t.data());
  if (t.numel() == 0) return {name, lo, lo};
  if (dtype_is_packed4(t.dtype)) return {name, lo, lo + t.nbytes()};
  int64_t last = 0;
  for (int i = 0; i < t.rank(); ++i) last += (t.shape[i] - 1) * t.strides[i];
  const int64_t item = dtype_bits(t.dtype) / 8;
  Span s{name, lo, lo + static_cast<uintptr_t>((last + 1) * item)};
  const int r = t.rank();
  if (r >= 2 && t.strides[r - 1] == 1 && t.strides[r - 2] > t.shape[r - 1]) {
    bool uniform = true;
    int64_t rows = t.shape[r - 2];
    for (int i = r - 3; i >= 0; --i) {
      if (t.shape[i] != 1 && t.strides[i] != t.strides[i + 1] * t.shape[i + 1]) uniform = false;
      rows *= t.shape[i];
    }
    if (uniform) {
      s.pitch = static_cast<uintptr_t>(t.strides[r - 2] * item);
      s.width = static_cast<uintptr_t>(t.shape[r - 1] * item);
      s.rows = static_cast<uintptr_t>(rows);
    }
  }
  return s;
}

static bool spans_overlap(const Span& a, const Span& b) {
  if (!(a.lo < b.hi && b.lo < a.hi)) return false;
  if (a.pitch == 0 || a.pitch != b.pitch) return true;  // conservative
  // Both are row-strided with the same pitch: compare column intervals modulo the pitch.
  const Span& f = a.lo <= b.lo ? a : b;
  const Span& g = a.lo <= b.lo ? b : a;
  const uintptr_t col = (g.lo - f.lo) % f.pitch;
  const bool cols_disjoint = col >= f.width && col + g.width <= f.pitch;
  return !cols_disjoint;
}

void check_no_alias(const std::vector<Span>& outputs, const std::vector<Span>& inputs,
                    const std::vector<std::pair<const char*, const char*>>& inplace_ok) {
  auto overlap = [](const Span& a, const Span& b) { return spans_overlap(a, b); };
  for (size_t i = 0; i < outputs.size(); ++i) {
    const Span& o = outputs[i];
    for (size_t j = i + 1; j < outputs.size(); ++j) {
      if (overlap(o, outputs[j])) throw Error(LORA_ERR_INVALID_ARG, std::string(o.name) + ": output overlaps output '" + outputs[j].name + "'", o.name);
    }
    for (const Span& in : inputs) {
      if (!overlap(o, in)) continue;
      bool ok = false;
      for (const auto& p : inplace_ok) {
        if (std::string(p.first) == o.name && std::string(p.second) == in.name && o.lo == in.lo && o.hi == in.hi) ok = true;
      }
      if (!ok) throw Error(LORA_ERR_INVALID_ARG, std::string(o.name) + ": output overlaps input '" + in.name + "' (aliasing is not allowed here)", o.name);
    }
  }
}

}  // namespace lora::binding
