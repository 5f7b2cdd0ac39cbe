// Distributed-training collectives over the MPI plug-in (../dist/dist_comm.h).
//   distInfo() -> { built, usable, reason, pluginPath, library, ncclBuilt, ncclReason, envRank, envSize }
//   distInit() -> Promise<{ rank, size, library }>
//   distAllreduce(tensors: Tensor[] | Float32Array | Float64Array, timeoutS) -> Promise<void>   (in-place sum)
//   distBroadcast(bytes: Uint8Array, root, timeoutS) -> Promise<void>                            (in place)
//   distBarrier(timeoutS) -> Promise<void>
//   distAbort(code, message)   prints "lora rank R: message" on stderr, then MPI_Abort: mpirun ends every rank
//   distFinalize()
// Collectives run on a libuv worker thread, so the event loop keeps turning while a rank waits for
// its peers; one at a time (a second call while one is in flight is refused). A failure rejects
// with ERR_LORA_DIST, a timeout with ERR_LORA_DIST_TIMEOUT (after which only distAbort is useful).
#include <atomic>
#include <cstdio>
#include <algorithm>
#include <functional>
#include <memory>
#include <vector>

#include "../dist/dist_comm.h"
#include "../runtime/device_registry.h"
#include "args.h"
#include "errors_js.h"
#include "registry.h"
#include "tensor_wrap.h"

namespace lora::binding {

namespace {

constexpr const char* kErrDist = "ERR_LORA_DIST";
constexpr const char* kErrTimeout = "ERR_LORA_DIST_TIMEOUT";

std::atomic<bool> g_busy{false};
int g_rank = -1;
int g_size = 0;

const LoraCommApi& ready(const char* fn) {
  std::string why;
  const LoraCommApi* a = dist::api(&why);
  if (!a) throw lora::Error(kErrDist, std::string(fn) + ": " + why);
  if (g_size < 1 && std::string(fn) != "distInit") throw lora::Error(kErrDist, std::string(fn) + ": call distInit() first");
  return *a;
}

// Runs `work` on a worker thread and settles a promise with its status.
class CollectiveWorker : public Napi::AsyncWorker {
 public:
  using Work = std::function<int(char* err, size_t len)>;
  CollectiveWorker(Napi::Env env, Work work, std::function<Napi::Value(Napi::Env)> result = nullptr)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)), result_(std::move(result)) {}

  Napi::Promise promise() { return deferred_.Promise(); }
  void keep(const Napi::Value& v) { refs_.push_back(Napi::Persistent(v)); }

 protected:
  void Execute() override {
    status_ = work_(err_, sizeof err_);
    g_busy = false;
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (status_ == LORA_COMM_OK) {
      deferred_.Resolve(result_ ? result_(env) : env.Undefined());
      return;
    }
    std::string prefix = "rank " + std::to_string(g_rank) + ": ";
    deferred_.Reject(make_error(env, status_ == LORA_COMM_TIMEOUT ? kErrTimeout : kErrDist, "", prefix + err_).Value());
  }
  void OnError(const Napi::Error& e) override {
    g_busy = false;
    deferred_.Reject(e.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  Work work_;
  std::function<Napi::Value(Napi::Env)> result_;
  std::vector<Napi::Reference<Napi::Value>> refs_;
  int status_ = LORA_COMM_ERROR;
  char err_[512] = {0};
};

Napi::Value queue(CollectiveWorker* w, const char* fn) {
  if (g_busy.exchange(true)) {
    delete w;
    throw lora::Error(kErrDist, std::string(fn) + ": another collective is still in flight (await each call)");
  }
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

double timeout_arg(const Args& a, size_t i) {
  const double t = a.number_or(i, "timeoutS", 600);
  if (!(t > 0 && t <= 86400)) a.bad("timeoutS", "a number of seconds in (0, 86400]");
  return t;
}

Napi::Value Info(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    const dist::Info d = dist::info();
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("built", d.built);
    o.Set("usable", d.usable);
    o.Set("reason", d.reason);
    o.Set("pluginPath", d.plugin_path);
    const LoraCommApi* a = dist::api(nullptr);
    o.Set("library", a && g_size > 0 ? a->library_version() : "");
    o.Set("ncclBuilt", d.nccl_built);
    o.Set("ncclReason", d.nccl_reason);
    o.Set("envRank", d.env_rank);
    o.Set("envSize", d.env_size);
    return o;
  });
}

Napi::Value Init(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    const LoraCommApi& api = ready("distInit");
    // Only a process that a launcher started joins a job: MPI's singleton init (no mpirun) would
    // start a runtime of its own for a world of one, which nothing here needs.
    if (dist::info().env_size < 1) {
      throw lora::Error(kErrDist, "distInit: this process was not started by mpirun (OMPI_COMM_WORLD_SIZE and PMI_SIZE are unset); there is no job to join");
    }
    auto* w = new CollectiveWorker(
        info.Env(),
        [&api](char* err, size_t len) { return api.init(&g_rank, &g_size, err, len); },
        [&api](Napi::Env env) -> Napi::Value {
          Napi::Object o = Napi::Object::New(env);
          o.Set("rank", g_rank);
          o.Set("size", g_size);
          o.Set("library", api.library_version());
          return o;
        });
    return queue(w, "distInit");
  });
}

// Device tensors: one NCCL communicator per process (made on first use from an id rank 0
// broadcasts over MPI), each tensor summed in place on the device's training stream.
Napi::Value nccl_allreduce(const Napi::CallbackInfo& info, const LoraCommApi& api, std::vector<Tensor> ts, double timeout) {
  if (!api.nccl_init) {
    throw lora::Error(LORA_ERR_UNSUPPORTED, "distAllreduce: the tensors are on " + device_name(ts.front().device()) + ", " + dist::info().nccl_reason, "tensors");
  }
  const int device = ts.front().device().index;
  void* stream = cuda_stream(device);
  auto held = std::make_shared<std::vector<Tensor>>(std::move(ts));
  auto* w = new CollectiveWorker(info.Env(), [&api, held, device, stream, timeout](char* e, size_t l) {
    if (int rc = api.nccl_init(device, e, l)) return rc;
    for (const Tensor& t : *held) {
      if (int rc = api.nccl_allreduce_sum_f32(t.data_as<float>(), t.numel(), stream, timeout, e, l)) return rc;
    }
    return static_cast<int>(LORA_COMM_OK);
  });
  return queue(w, "distAllreduce");
}

Napi::Value Allreduce(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "distAllreduce");
    const LoraCommApi& api = ready("distAllreduce");
    const double timeout = timeout_arg(a, 1);
    const Napi::Value v = a.value(0);
    if (v.IsTypedArray()) {
      auto ta = v.As<Napi::TypedArray>();
      const napi_typedarray_type type = ta.TypedArrayType();
      if (type != napi_float32_array && type != napi_float64_array) a.bad("buffer", "a Float32Array, a Float64Array or an array of f32 host tensors");
      void* p = static_cast<char*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
      const int64_t n = static_cast<int64_t>(ta.ElementLength());
      CollectiveWorker* w;
      if (type == napi_float32_array) {
        w = new CollectiveWorker(info.Env(), [&api, p, n, timeout](char* e, size_t l) { return api.allreduce_sum_f32(static_cast<float*>(p), n, timeout, e, l); });
      } else {
        w = new CollectiveWorker(info.Env(), [&api, p, n, timeout](char* e, size_t l) { return api.allreduce_sum_f64(static_cast<double*>(p), n, timeout, e, l); });
      }
      w->keep(v);
      return queue(w, "distAllreduce");
    }
    const std::vector<Napi::Value> items = a.elements(0, "tensors", 1 << 20, "an array of f32 host tensors");
    std::vector<Tensor> ts;
    int64_t total = 0;
    for (size_t i = 0; i < items.size(); ++i) {
      const std::string name = "tensors[" + std::to_string(i) + "]";
      Tensor& t = a.tensor_value(items[i], name);
      if (t.dtype != DType::F32) throw lora::Error(LORA_ERR_DTYPE, name + " must be f32 (LoRA grads are), got " + dtype_name(t.dtype), name);
      const Device first = ts.empty() ? t.device() : ts.front().device();
      if (t.device().kind == DeviceKind::EMU || t.device().kind != first.kind || t.device().index != first.index) {
        throw lora::Error(LORA_ERR_DEVICE, name + " is on " + device_name(t.device()) + "; expected every tensor on " +
                                               device_name(first) + " (cpu: summed over MPI, cuda: over NCCL)", name);
      }
      if (!t.is_contiguous()) throw lora::Error(LORA_ERR_SHAPE, name + " must be contiguous", name);
      ts.push_back(t);
      total += t.numel();
    }
    if (!ts.empty() && ts.front().device().kind == DeviceKind::CUDA) return nccl_allreduce(info, api, std::move(ts), timeout);
    auto held = std::make_shared<std::vector<Tensor>>(std::move(ts));
    // One collective per call: the tensors are packed into one buffer (a latency per step, not per tensor).
    auto* w = new CollectiveWorker(info.Env(), [&api, held, total, timeout](char* e, size_t l) {
      if (held->size() == 1) return api.allreduce_sum_f32(held->front().data_as<float>(), total, timeout, e, l);
      std::vector<float> buf(static_cast<size_t>(total));
      size_t off = 0;
      for (const Tensor& t : *held) {
        std::copy_n(t.data_as<float>(), t.numel(), buf.data() + off);
        off += static_cast<size_t>(t.numel());
      }
      const int rc = api.allreduce_sum_f32(buf.data(), total, timeout, e, l);
      if (rc != LORA_COMM_OK) return rc;
      off = 0;
      for (const Tensor& t : *held) {
        std::copy_n(buf.data() + off, t.numel(), t.data_as<float>());
        off += static_cast<size_t>(t.numel());
      }
      return rc;
    });
    return queue(w, "distAllreduce");
  });
}

Napi::Value Broadcast(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "distBroadcast");
    const LoraCommApi& api = ready("distBroadcast");
    const int root = static_cast<int>(a.integer(1, "root", 0, g_size - 1));
    const double timeout = timeout_arg(a, 2);
    const Napi::Value v = a.value(0);
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) a.bad("bytes", "a Uint8Array");
    auto ta = v.As<Napi::Uint8Array>();
    void* p = ta.Data();
    const int64_t n = static_cast<int64_t>(ta.ByteLength());
    auto* w = new CollectiveWorker(info.Env(), [&api, p, n, root, timeout](char* e, size_t l) { return api.broadcast(p, n, root, timeout, e, l); });
    w->keep(v);
    return queue(w, "distBroadcast");
  });
}

Napi::Value Barrier(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "distBarrier");
    const LoraCommApi& api = ready("distBarrier");
    const double timeout = timeout_arg(a, 0);
    return queue(new CollectiveWorker(info.Env(), [&api, timeout](char* e, size_t l) { return api.barrier(timeout, e, l); }), "distBarrier");
  });
}

// Ends the whole job: the one place the addon stops the process, and only when JS asks for it.
Napi::Value Abort(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "distAbort");
    const LoraCommApi& api = ready("distAbort");
    const int code = static_cast<int>(a.integer_or(0, "code", 1, 255, 1));
    const std::string message = a.has(1) ? a.string(1, "message") : std::string("aborted");
    std::fprintf(stderr, "lora rank %d/%d: %s; stopping every rank (MPI_Abort %d)\n", g_rank, g_size, message.c_str(), code);
    std::fflush(stderr);
    api.abort(code);
    return info.Env().Undefined();
  });
}

Napi::Value Finalize(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    const LoraCommApi* api = dist::api(nullptr);
    if (!api || g_size < 1) return info.Env().Undefined();
    if (g_busy) throw lora::Error(kErrDist, "distFinalize: a collective is still in flight");
    if (api->finalize() != LORA_COMM_OK) throw lora::Error(kErrDist, "distFinalize: MPI_Finalize failed");
    return info.Env().Undefined();
  });
}

void Register(Napi::Env env, Napi::Object exports) {
  exports.Set("distInfo", Napi::Function::New<Info>(env, "distInfo"));
  exports.Set("distInit", Napi::Function::New<Init>(env, "distInit"));
  exports.Set("distAllreduce", Napi::Function::New<Allreduce>(env, "distAllreduce"));
  exports.Set("distBroadcast", Napi::Function::New<Broadcast>(env, "distBroadcast"));
  exports.Set("distBarrier", Napi::Function::New<Barrier>(env, "distBarrier"));
  exports.Set("distAbort", Napi::Function::New<Abort>(env, "distAbort"));
  exports.Set("distFinalize", Napi::Function::New<Finalize>(env, "distFinalize"));
}

const Registrar reg("dist", &Register);

}  // namespace

}  // namespace lora::binding
