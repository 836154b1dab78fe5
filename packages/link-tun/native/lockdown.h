// usernet link-tun: lockDown(), see lockdown.cc.
#pragma once

#include <napi.h>

namespace usernet {
void InitLockDown(Napi::Env env, Napi::Object exports);
}
