// usernet link-tun native addon: only what needs C++.
//
//  - open /dev/net/tun (TUNSETIFF, TUNSETVNETHDRSZ, TUNSETOFFLOAD with fallbacks)
//  - batched read(2) into a caller-provided slab (offsets/lengths into a Uint32Array)
//  - batched write(2) of an array of buffers
//  - a uv_poll_t readable watcher on the environment's loop that calls one JS callback per event
//  - ref/unref, close (idempotent, also run by an environment cleanup hook)
//
// No allocation per packet, no libuv threadpool. Errors reach JS as Error objects with a
// numeric `errno` (positive) and a `syscall`; the TypeScript side maps them to Node-style codes.

#include <napi.h>
#include <uv.h>

#include <errno.h>
#include <stdlib.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "errno.h"
#include "lockdown.h"

#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#endif
#ifndef TUN_F_USO6
#define TUN_F_USO6 0x40
#endif

namespace {

using usernet::ThrowErrno;

constexpr int kVnetHdrLen = 10;
// Layout of the read metadata array: 4 header words, then (offset, length) pairs.
constexpr size_t kMetaHeader = 4;

// Typed-array arguments are checked for their element type (a Uint8Array taken for a Uint32Array
// would be read and written 4x past its end) with one napi_get_typedarray_info each, and numbers
// for being numbers; the read/write path below uses the raw pointers and lengths.
template <typename T>
struct View {
  T* data = nullptr;
  size_t length = 0;  // elements
};

template <typename T>
bool TypedArrayOf(napi_env env, napi_value v, napi_typedarray_type type, View<T>* out) {
  bool is = false;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return false;
  napi_typedarray_type actual;
  void* data = nullptr;
  if (napi_get_typedarray_info(env, v, &actual, &out->length, &data, nullptr, nullptr) != napi_ok || actual != type) return false;
  out->data = static_cast<T*>(data);
  return true;
}

bool Uint32Of(napi_env env, napi_value v, uint32_t* out) { return napi_get_value_uint32(env, v, out) == napi_ok; }

inline size_t Align8(size_t v) { return (v + 7) & ~static_cast<size_t>(7); }

class TunHandle : public Napi::ObjectWrap<TunHandle> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "TunHandle",
                       {
                           InstanceMethod<&TunHandle::Read>("read"),
                           InstanceMethod<&TunHandle::Write>("write"),
                           InstanceMethod<&TunHandle::Start>("start"),
                           InstanceMethod<&TunHandle::Stop>("stop"),
                           InstanceMethod<&TunHandle::Ref>("ref"),
                           InstanceMethod<&TunHandle::Unref>("unref"),
                           InstanceMethod<&TunHandle::Close>("close"),
                       });
  }

  // new TunHandle(name: string, vnetHdr: boolean)
  explicit TunHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TunHandle>(info) {
    Napi::Env env = info.Env();
    std::string name;
    if (info.Length() > 0 && info[0].IsString()) name = info[0].As<Napi::String>().Utf8Value();
    const bool vnet = info.Length() > 1 && info[1].ToBoolean().Value();
    if (name.size() >= IFNAMSIZ) {
      ThrowErrno(env, EINVAL, "open", "interface name longer than 15 bytes");
      return;
    }
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
      ThrowErrno(env, errno, "open", "/dev/net/tun");
      return;
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI | (vnet ? IFF_VNET_HDR : 0);
    memcpy(ifr.ifr_name, name.data(), name.size());
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
      int e = errno;
      ::close(fd);
      ThrowErrno(env, e, "ioctl", "TUNSETIFF " + name);
      return;
    }
    unsigned long accepted = 0;
    if (vnet) {
      int sz = kVnetHdrLen;
      if (ioctl(fd, TUNSETVNETHDRSZ, &sz) < 0) {
        int e = errno;
        ::close(fd);
        ThrowErrno(env, e, "ioctl", "TUNSETVNETHDRSZ");
        return;
      }
      // Most to least: USO needs Linux 6.2; TSO needs CSUM; 0 always works.
      const unsigned long candidates[] = {
          TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_USO4 | TUN_F_USO6,
          TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6,
          TUN_F_CSUM,
          0,
      };
      for (unsigned long c : candidates) {
        if (ioctl(fd, TUNSETOFFLOAD, c) == 0) {
          accepted = c;
          break;
        }
      }
    }
    ifr.ifr_name[IFNAMSIZ - 1] = '\0';
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
      ::close(fd);
      ThrowErrno(env, EINVAL, "uv_poll_init", "no event loop");
      return;
    }
    poll_ = NewPoll();
    int rc = poll_ == nullptr ? UV_ENOMEM : uv_poll_init(loop, poll_, fd);
    if (rc != 0) {
      free(poll_);
      poll_ = nullptr;
      ::close(fd);
      ThrowErrno(env, -rc, "uv_poll_init", "");
      return;
    }
    poll_->data = this;
    fd_ = fd;
    env_ = env;
    if (napi_add_env_cleanup_hook(env, CleanupHook, this) == napi_ok) hookRegistered_ = true;

    Napi::Object self = info.This().As<Napi::Object>();
    self.Set("fd", Napi::Number::New(env, fd));
    self.Set("name", Napi::String::New(env, ifr.ifr_name));
    self.Set("offloads", Napi::Number::New(env, static_cast<double>(accepted)));
    self.Set("vnetHdr", Napi::Boolean::New(env, vnet));
  }

  ~TunHandle() override {
    if (hookRegistered_) {
      napi_remove_env_cleanup_hook(env_, CleanupHook, this);
      hookRegistered_ = false;
    }
    CloseNative();
  }

 private:
  int fd_ = -1;
  uv_poll_t* poll_ = nullptr;
  bool polling_ = false;
  bool hookRegistered_ = false;
  napi_env env_ = nullptr;
  Napi::FunctionReference callback_;
  std::unique_ptr<Napi::AsyncContext> async_;

  static void CleanupHook(void* arg) {
    TunHandle* self = static_cast<TunHandle*>(arg);
    self->hookRegistered_ = false;
    // The environment is going away: release OS resources only, no JS.
    self->CloseNative();
  }

  // The close callback is libc's free, not a function of this addon: when a worker thread ends,
  // Node unloads the addon before its loop runs the closing handles' callbacks.
  static uv_poll_t* NewPoll() { return static_cast<uv_poll_t*>(malloc(sizeof(uv_poll_t))); }
  static void ClosePoll(uv_poll_t* p) {
    uv_close(reinterpret_cast<uv_handle_t*>(p), reinterpret_cast<uv_close_cb>(reinterpret_cast<void (*)(void)>(&free)));
  }

  static void OnPoll(uv_poll_t* h, int /*status*/, int /*events*/) {
    TunHandle* self = static_cast<TunHandle*>(h->data);
    if (self != nullptr) self->Fire();
  }

  // Stops the watcher (uv_close frees the handle later), then closes the fd. Idempotent.
  void CloseNative() {
    if (poll_ != nullptr) {
      poll_->data = nullptr;
      uv_poll_stop(poll_);  // removes the fd from epoll before it is closed
      ClosePoll(poll_);
      poll_ = nullptr;
    }
    polling_ = false;
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }

  void Fire() {
    if (callback_.IsEmpty()) return;
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    // MakeCallback opens a callback scope: microtasks and nextTicks run when it closes.
    callback_.MakeCallback(Value(), std::initializer_list<napi_value>{}, *async_);
    if (env.IsExceptionPending()) {
      Napi::Error err = env.GetAndClearPendingException();
      napi_fatal_exception(env, err.Value());
    }
  }

  // read(slab: Uint8Array, cursor, headroom, maxRead, maxPackets, meta: Uint32Array): number
  // Reads packets until EAGAIN, maxPackets, or the slab has no room for another maxRead bytes.
  // Packet i is read at align8(previous end) + headroom. meta[0] = 1 when drained (EAGAIN),
  // meta[1] = packets lost to per-packet read errors, meta[2] = errno of a fatal read error,
  // meta[3] = end offset of the last packet; then meta[4 + 2i] = offset, meta[5 + 2i] = length.
  Napi::Value Read(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    View<uint8_t> slab;
    View<uint32_t> meta;
    uint32_t cursor = 0, headroomArg = 0, maxReadArg = 0, maxPacketsArg = 0;
    if (info.Length() < 6 || !TypedArrayOf(env, info[0], napi_uint8_array, &slab) || !Uint32Of(env, info[1], &cursor) || !Uint32Of(env, info[2], &headroomArg) ||
        !Uint32Of(env, info[3], &maxReadArg) || !Uint32Of(env, info[4], &maxPacketsArg) || !TypedArrayOf(env, info[5], napi_uint32_array, &meta)) {
      Napi::TypeError::New(env, "read(slab: Uint8Array, cursor, headroom, maxRead, maxPackets: number, meta: Uint32Array)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    size_t pos = cursor;
    const size_t headroom = headroomArg;
    const size_t maxRead = maxReadArg;
    size_t maxPackets = maxPacketsArg;
    uint32_t* m = meta.data;
    const size_t metaLen = meta.length;
    if (metaLen < kMetaHeader) {
      Napi::RangeError::New(env, "meta too short").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if ((metaLen - kMetaHeader) / 2 < maxPackets) maxPackets = (metaLen - kMetaHeader) / 2;
    m[0] = m[1] = m[2] = 0;
    m[3] = static_cast<uint32_t>(pos);
    if (fd_ < 0) {
      m[2] = EBADF;
      return Napi::Number::New(env, 0);
    }
    uint8_t* base = slab.data;
    const size_t slabLen = slab.length;  // bytes: a Uint8Array
    size_t count = 0;
    size_t lost = 0;
    while (count < maxPackets) {
      const size_t at = Align8(pos) + headroom;
      if (at + maxRead > slabLen) break;
      ssize_t n = ::read(fd_, base + at, maxRead);
      if (n < 0) {
        const int e = errno;
        if (e == EINTR) continue;
        if (e == EAGAIN || e == EWOULDBLOCK) {
          m[0] = 1;
          break;
        }
        if (e == EFAULT || e == EINVAL || e == EMSGSIZE || e == ENOBUFS) {
          // The kernel dropped that one packet; go on with the next.
          if (++lost > maxPackets) break;
          continue;
        }
        m[2] = static_cast<uint32_t>(e);
        break;
      }
      m[kMetaHeader + 2 * count] = static_cast<uint32_t>(at);
      m[kMetaHeader + 2 * count + 1] = static_cast<uint32_t>(n);
      count++;
      pos = at + static_cast<size_t>(n);
    }
    m[1] = static_cast<uint32_t>(lost);
    m[3] = static_cast<uint32_t>(pos);
    return Napi::Number::New(env, static_cast<double>(count));
  }

  // write(bufs: Uint8Array[], count, starts: Uint32Array, lens: Uint32Array, result: Uint32Array): number
  // One write(2) per packet. Returns packets written; result[0] = dropped (EAGAIN/ENOBUFS),
  // result[1] = other failures, result[2] = errno of the last other failure, result[3] = bytes written.
  Napi::Value Write(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    View<uint32_t> starts, lens, result;
    uint32_t countArg = 0;
    if (info.Length() < 5 || !info[0].IsArray() || !Uint32Of(env, info[1], &countArg) || !TypedArrayOf(env, info[2], napi_uint32_array, &starts) ||
        !TypedArrayOf(env, info[3], napi_uint32_array, &lens) || !TypedArrayOf(env, info[4], napi_uint32_array, &result)) {
      Napi::TypeError::New(env, "write(bufs: Uint8Array[], count: number, starts, lens, result: Uint32Array)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    napi_value arr = info[0];
    size_t count = countArg;
    if (result.length < 4) {
      Napi::RangeError::New(env, "result too short").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (count > starts.length) count = starts.length;
    if (count > lens.length) count = lens.length;
    const uint32_t* s = starts.data;
    const uint32_t* l = lens.data;
    uint32_t* r = result.data;
    uint32_t written = 0, dropped = 0, failed = 0, lastErr = 0;
    uint32_t bytes = 0;
    for (size_t i = 0; i < count; i++) {
      napi_value v;
      void* data = nullptr;
      size_t byteLen = 0;  // a Uint8Array: its length is its byte length
      bool isTyped = false;
      napi_typedarray_type type = napi_int8_array;
      if (napi_get_element(env, arr, static_cast<uint32_t>(i), &v) != napi_ok || napi_is_typedarray(env, v, &isTyped) != napi_ok || !isTyped ||
          napi_get_typedarray_info(env, v, &type, &byteLen, &data, nullptr, nullptr) != napi_ok || type != napi_uint8_array) {
        failed++;
        lastErr = EINVAL;
        continue;
      }
      if (static_cast<size_t>(s[i]) + l[i] > byteLen) {
        failed++;
        lastErr = EINVAL;
        continue;
      }
      if (fd_ < 0) {
        failed++;
        lastErr = EBADF;
        continue;
      }
      ssize_t n;
      do {
        n = ::write(fd_, static_cast<uint8_t*>(data) + s[i], l[i]);
      } while (n < 0 && errno == EINTR);
      if (n < 0) {
        const int e = errno;
        if (e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS) {
          dropped++;
        } else {
          failed++;
          lastErr = static_cast<uint32_t>(e);
        }
        continue;
      }
      written++;
      bytes += static_cast<uint32_t>(n);
    }
    r[0] = dropped;
    r[1] = failed;
    r[2] = lastErr;
    r[3] = bytes;
    return Napi::Number::New(env, written);
  }

  // start(callback): polls for readability; the callback runs once per readable event.
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsFunction()) {
      Napi::TypeError::New(env, "start(callback)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (poll_ == nullptr) {
      ThrowErrno(env, EBADF, "uv_poll_start", "the link is closed");
      return env.Undefined();
    }
    callback_ = Napi::Persistent(info[0].As<Napi::Function>());
    if (!async_) async_ = std::make_unique<Napi::AsyncContext>(env, "usernet:tun");
    int rc = uv_poll_start(poll_, UV_READABLE, OnPoll);
    if (rc != 0) {
      callback_.Reset();
      async_.reset();
      ThrowErrno(env, -rc, "uv_poll_start", "");
      return env.Undefined();
    }
    polling_ = true;
    return env.Undefined();
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    if (poll_ != nullptr && polling_) uv_poll_stop(poll_);
    polling_ = false;
    callback_.Reset();
    async_.reset();
    return info.Env().Undefined();
  }

  Napi::Value Ref(const Napi::CallbackInfo& info) {
    if (poll_ != nullptr) uv_ref(reinterpret_cast<uv_handle_t*>(poll_));
    return info.Env().Undefined();
  }

  Napi::Value Unref(const Napi::CallbackInfo& info) {
    if (poll_ != nullptr) uv_unref(reinterpret_cast<uv_handle_t*>(poll_));
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    CloseNative();
    callback_.Reset();
    async_.reset();
    if (hookRegistered_) {
      napi_remove_env_cleanup_hook(env_, CleanupHook, this);
      hookRegistered_ = false;
    }
    return info.Env().Undefined();
  }
};

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("TunHandle", TunHandle::Define(env));
  exports.Set("VNET_HDR_LEN", Napi::Number::New(env, kVnetHdrLen));
  usernet::InitLockDown(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(usernet_tun, Init)
