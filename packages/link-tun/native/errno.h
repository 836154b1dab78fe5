// usernet link-tun: the one way the addon reports a failed system call to JavaScript.
#pragma once

#include <napi.h>

#include <string.h>

#include <string>

namespace usernet {
// Throws an Error "<syscall> failed: <strerror>( (<detail>))" with `errno` and `syscall` set;
// the TypeScript side (native.ts) maps errno to a Node-style code.
inline void ThrowErrno(Napi::Env env, int err, const char* syscall, const std::string& detail) {
  std::string msg = std::string(syscall) + " failed: " + strerror(err);
  if (!detail.empty()) msg += " (" + detail + ")";
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, syscall));
  e.ThrowAsJavaScriptException();
}
}  // namespace usernet
