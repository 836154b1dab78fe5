// usernet link-tun: locking the process down once the TUN device is open and configured.
//
//   lockDown(uid, gid)   uid/gid -1: keep the current ones
//
// In this order:
//   1. PR_SET_NO_NEW_PRIVS: execve can never grant privileges again (setuid binaries, file caps).
//   2. Every capability leaves the bounding set (PR_CAPBSET_DROP; needs CAP_SETPCAP, so root only
//      or a process that holds it), on every thread.
//   3. With a uid: setgroups([]), setresgid, setresuid. glibc applies these to every thread, and
//      leaving uid 0 makes the kernel clear the permitted, effective and ambient sets.
//   4. Ambient set cleared, then capset() with empty permitted/effective/inheritable sets, on every
//      thread: a non-root process holding CAP_NET_ADMIN (file caps, ambient caps) sheds it too.
//   5. A seccomp-BPF filter, on every thread (SECCOMP_FILTER_FLAG_TSYNC), that answers EPERM to
//      every TUN administration ioctl (TUNSETIFF, TUNSETPERSIST, TUNSETOWNER, TUNSETCARRIER, ...)
//      whatever the fd, and to syscalls a packet-moving process never needs (see kDenied).
//
// Why per thread: capabilities, the bounding set and the ambient set belong to a thread, not a
// process (capset(2) and prctl(2) change only the caller), and Node runs several threads (V8
// platform workers, the libuv pool) before any addon is loaded. Steps 2 and 4 run on each thread
// from a real-time signal handler sent with tgkill(2), the way glibc applies setuid to all threads.
// A thread that blocks that signal for good cannot be reached: Node's SIGUSR1 watcher thread
// blocks every signal. lockDown reports such threads; with a uid change (step 3, which glibc does
// reach) they lose their capabilities anyway, and the seccomp filter and no_new_privs cover them.

#include <napi.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <vector>

#include "errno.h"
#include "lockdown.h"

#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif
#ifndef SECCOMP_RET_KILL_PROCESS
#define SECCOMP_RET_KILL_PROCESS 0x80000000U
#endif

namespace usernet {
namespace {

#if defined(__x86_64__)
constexpr uint32_t kAuditArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__) && defined(__AARCH64EL__)
constexpr uint32_t kAuditArch = AUDIT_ARCH_AARCH64;
#else
constexpr uint32_t kAuditArch = 0;  // no filter for this architecture: lockDown throws ENOSYS
#endif

// ---- The seccomp filter --------------------------------------------------------------------

// Syscalls answered with EPERM: debugging other processes, kernel code and module loading,
// mounts and namespaces, eBPF, perf, the kernel keyring, execution domains, userfaultfd. None of
// them is used by Node, libuv or V8 in normal operation (Docker's default profile denies them too).
const long kDenied[] = {
    __NR_ptrace,          __NR_process_vm_readv, __NR_process_vm_writev, __NR_kexec_load,
#ifdef __NR_kexec_file_load
    __NR_kexec_file_load,
#endif
    __NR_bpf,             __NR_perf_event_open,  __NR_init_module,       __NR_finit_module,
    __NR_delete_module,   __NR_mount,            __NR_umount2,           __NR_pivot_root,
    __NR_swapon,          __NR_swapoff,          __NR_reboot,            __NR_unshare,
    __NR_setns,           __NR_keyctl,           __NR_add_key,           __NR_request_key,
    __NR_personality,     __NR_open_by_handle_at, __NR_acct,
#ifdef __NR_userfaultfd
    __NR_userfaultfd,
#endif
#ifdef __NR_fsopen
    __NR_fsopen,          __NR_fsconfig,         __NR_fsmount,           __NR_fspick,
    __NR_move_mount,      __NR_open_tree,
#endif
#ifdef __NR_mount_setattr
    __NR_mount_setattr,
#endif
#ifdef __NR_iopl
    __NR_iopl,            __NR_ioperm,
#endif
};

// clone(2) flags that create namespaces (CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID,
// NEWNET). CLONE_NEWTIME cannot be passed to clone(2) (its low byte is the exit signal).
constexpr uint32_t kCloneNamespaceFlags = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000;

// The ioctl request numbers of the TUN driver (linux/if_tun.h) are _IOC(dir, 'T', 200..., size):
// type 0x54, numbers from 200 (TUNSETNOCSUM) up (TUNSETCARRIER is 226, TUNGETDEVNETNS 227). The
// filter compares type and number only (the low 16 bits), so every direction and size of every
// present and future TUN request is refused, the getters too (nothing reads them after set-up).
// Terminal ioctls share type 'T' but stay below number 0x60 (TCGETS 0x5401, TIOCGWINSZ 0x5413).
constexpr uint32_t kTunIoctlFirst = (0x54 << 8) | 200;
constexpr uint32_t kTunIoctlLast = (0x54 << 8) | 0xff;
// Socket ioctls the TUN driver also answers: set the hardware address, get the netns fd.
constexpr uint32_t kSIOCSIFHWADDR = 0x8924;
constexpr uint32_t kSIOCGSKNS = 0x894c;

constexpr uint32_t kArgLow(int i) { return offsetof(struct seccomp_data, args) + 8 * i; }  // little endian

std::vector<sock_filter> BuildFilter() {
  std::vector<sock_filter> f;
  auto stmt = [&f](uint16_t code, uint32_t k) { f.push_back(BPF_STMT(code, k)); };
  auto jump = [&f](uint16_t code, uint32_t k, uint8_t jt, uint8_t jf) { f.push_back(BPF_JUMP(code, k, jt, jf)); };
  const uint32_t eperm = SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA);

  // A syscall of another ABI (i386 or arm32 compat) would have other numbers: kill the process
  // (seccomp(2): check the architecture first, always).
  stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
  jump(BPF_JMP | BPF_JEQ | BPF_K, kAuditArch, 1, 0);
  stmt(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
  stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
#if defined(__x86_64__)
  // x32 syscalls share AUDIT_ARCH_X86_64 with bit 30 set in the number.
  jump(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 1);
  stmt(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
#endif
  for (long nr : kDenied) {
    jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(nr), 0, 1);
    stmt(BPF_RET | BPF_K, eperm);
  }
  // clone3 passes its flags in memory a filter cannot read: ENOSYS makes glibc fall back to
  // clone(2), whose flags it can.
#ifdef __NR_clone3
  jump(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone3, 0, 1);
  stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS);
#endif
  // clone(2): x86_64 and arm64 both take the flags as the first argument.
  jump(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone, 0, 4);
  stmt(BPF_LD | BPF_W | BPF_ABS, kArgLow(0));
  jump(BPF_JMP | BPF_JSET | BPF_K, kCloneNamespaceFlags, 0, 1);
  stmt(BPF_RET | BPF_K, eperm);
  stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  // ioctl(fd, request, ...): the request, whatever the fd (an fd can be dup'ed or passed on).
  // The kernel reads the request as a 32-bit unsigned int, the low word of args[1].
  jump(BPF_JMP | BPF_JEQ | BPF_K, __NR_ioctl, 0, 6);  // not ioctl: allow
  stmt(BPF_LD | BPF_W | BPF_ABS, kArgLow(1));
  stmt(BPF_ALU | BPF_AND | BPF_K, 0xffff);
  jump(BPF_JMP | BPF_JGE | BPF_K, kTunIoctlFirst, 0, 1);  // below the TUN range: next check
  jump(BPF_JMP | BPF_JGT | BPF_K, kTunIoctlLast, 0, 3);   // inside it: refuse (last instruction)
  jump(BPF_JMP | BPF_JEQ | BPF_K, kSIOCSIFHWADDR, 2, 0);
  jump(BPF_JMP | BPF_JEQ | BPF_K, kSIOCGSKNS, 1, 0);
  stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  stmt(BPF_RET | BPF_K, eperm);
  return f;
}

// ---- Running a credential change on every thread -------------------------------------------

enum Op : int { kNone = 0, kDropBounding = 1, kClearCapabilities = 2 };

constexpr int kMaxThreads = 4096;
std::atomic<int> g_op{kNone};
std::atomic<int> g_firstError{0};
std::atomic<int> g_count{0};
std::atomic<pid_t> g_tids[kMaxThreads];
std::atomic<bool> g_done[kMaxThreads];
int g_signal = 0;

pid_t Gettid() { return static_cast<pid_t>(syscall(SYS_gettid)); }

// Async-signal-safe: raw syscalls only. Returns 0 or an errno.
int ApplyOp(int op) {
  if (op == kDropBounding) {
    for (unsigned long cap = 0; prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; cap++) {
      if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) return errno;
    }
  } else if (op == kClearCapabilities) {
    // EINVAL: a kernel before 4.3 has no ambient set.
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) return errno;
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    if (syscall(SYS_capset, &hdr, data) != 0) return errno;
  }
  return 0;
}

void OnSignal(int) {
  const int saved = errno;
  const int op = g_op.load();
  if (op != kNone) {
    const int e = ApplyOp(op);
    if (e != 0) {
      int zero = 0;
      g_firstError.compare_exchange_strong(zero, e);
    }
    const pid_t me = Gettid();
    const int n = g_count.load();
    for (int i = 0; i < n; i++) {
      if (g_tids[i].load() == me) g_done[i].store(true);
    }
  }
  errno = saved;
}

// Installs OnSignal on a free real-time signal (no handler yet). It stays installed: a signal that
// was sent but is delivered late must not meet the default action (which ends the process).
int InstallHandler() {
  if (g_signal != 0) return 0;
  for (int sig = SIGRTMAX - 4; sig >= SIGRTMIN + 4; sig--) {
    struct sigaction old;
    if (sigaction(sig, nullptr, &old) != 0) continue;
    if (old.sa_handler != SIG_DFL || (old.sa_flags & SA_SIGINFO) != 0) continue;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = OnSignal;
    sa.sa_flags = SA_RESTART;
    sigfillset(&sa.sa_mask);
    if (sigaction(sig, &sa, nullptr) == 0) {
      g_signal = sig;
      return 0;
    }
  }
  return EBUSY;
}

// Whether thread `tid` blocks `sig` (SigBlk in /proc/self/task/TID/status); false when unknown.
bool Blocks(pid_t tid, int sig) {
  char path[64];
  snprintf(path, sizeof path, "/proc/self/task/%d/status", static_cast<int>(tid));
  FILE* fp = fopen(path, "re");
  if (fp == nullptr) return false;
  char line[256];
  unsigned long long mask = 0;
  while (fgets(line, sizeof line, fp) != nullptr) {
    if (sscanf(line, "SigBlk: %llx", &mask) == 1) break;
  }
  fclose(fp);
  return (mask >> (sig - 1)) & 1ULL;
}

std::vector<pid_t> Threads() {
  std::vector<pid_t> out;
  DIR* d = opendir("/proc/self/task");
  if (d == nullptr) return out;
  while (struct dirent* e = readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    out.push_back(static_cast<pid_t>(atoi(e->d_name)));
  }
  closedir(d);
  return out;
}

bool Contains(const std::vector<pid_t>& v, pid_t t) {
  for (pid_t x : v)
    if (x == t) return true;
  return false;
}

// Runs `op` on every other thread that takes the signal, then on this one. Threads created
// meanwhile show up in the next scan. Returns 0 or an errno; `unreachable` gets the threads that
// kept the signal blocked.
int OnEveryThread(int op, std::vector<pid_t>* unreachable) {
  int rc = InstallHandler();
  if (rc != 0) return rc;
  const pid_t self = Gettid();
  const pid_t pid = getpid();
  std::vector<pid_t> done;
  std::vector<pid_t> blocked;
  std::vector<pid_t> gaveUp;  // signalled, never answered within 2 s (stopped?): not signalled again
  g_firstError.store(0);
  for (int round = 0; round < 50; round++) {
    std::vector<pid_t> targets;
    blocked.clear();
    for (pid_t t : Threads()) {
      if (t == self || Contains(done, t)) continue;
      if (Contains(gaveUp, t)) {
        blocked.push_back(t);
        continue;
      }
      if (Blocks(t, g_signal)) blocked.push_back(t);
      else if (targets.size() < kMaxThreads) targets.push_back(t);
    }
    if (targets.empty()) {
      // Nothing new to signal. A thread that blocks the signal may be a new one that has not
      // unblocked yet (glibc blocks signals while it starts a thread): look again a few times.
      if (blocked.empty() || round >= 10) break;
      struct timespec ts = {0, 5 * 1000 * 1000};
      nanosleep(&ts, nullptr);
      continue;
    }
    g_count.store(0);
    for (size_t i = 0; i < targets.size(); i++) {
      g_tids[i].store(targets[i]);
      g_done[i].store(false);
    }
    g_count.store(static_cast<int>(targets.size()));
    g_op.store(op);
    std::vector<bool> sent(targets.size(), false);
    for (size_t i = 0; i < targets.size(); i++) {
      if (syscall(SYS_tgkill, pid, targets[i], g_signal) == 0) sent[i] = true;
      else done.push_back(targets[i]);  // ESRCH: the thread has ended
    }
    // Wait up to 2 s for every thread we signalled.
    for (int ms = 0; ms < 2000; ms++) {
      bool all = true;
      for (size_t i = 0; i < targets.size(); i++)
        if (sent[i] && !g_done[i].load()) all = false;
      if (all) break;
      struct timespec ts = {0, 1000 * 1000};
      nanosleep(&ts, nullptr);
    }
    g_op.store(kNone);
    for (size_t i = 0; i < targets.size(); i++) {
      if (!sent[i]) continue;
      if (g_done[i].load()) done.push_back(targets[i]);
      else gaveUp.push_back(targets[i]);  // blocked it after we looked, or stopped
    }
    g_count.store(0);
    if (g_firstError.load() != 0) return g_firstError.load();
  }
  for (pid_t t : blocked)
    if (!Contains(*unreachable, t)) unreachable->push_back(t);
  for (pid_t t : gaveUp)
    if (!Contains(*unreachable, t)) unreachable->push_back(t);
  return ApplyOp(op);
}

bool HasEffective(const __user_cap_data_struct* data, int cap) { return (data[cap / 32].effective >> (cap % 32)) & 1U; }

std::atomic<bool> g_locked{false};

// lockDown(uid: number, gid: number): { boundingSetCleared: boolean, unreachableThreads: number[] }
Napi::Value LockDown(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) {
    Napi::TypeError::New(env, "lockDown(uid, gid)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const double uidArg = info[0].As<Napi::Number>().DoubleValue();
  const double gidArg = info[1].As<Napi::Number>().DoubleValue();
  auto validId = [](double v) { return v == -1 || (v >= 0 && v < 4294967295.0 && v == static_cast<double>(static_cast<uint32_t>(v))); };
  if (!validId(uidArg) || !validId(gidArg)) {
    Napi::TypeError::New(env, "lockDown: uid and gid are integers from 0 to 2^32-2, or -1").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (kAuditArch == 0) {
    ThrowErrno(env, ENOSYS, "lockDown", "no seccomp filter for this architecture");
    return env.Undefined();
  }
  if (g_locked.load()) {
    ThrowErrno(env, EALREADY, "lockDown", "the process is already locked down");
    return env.Undefined();
  }
  const bool setIds = uidArg != -1;
  const uid_t uid = setIds ? static_cast<uid_t>(uidArg) : 0;
  const gid_t gid = setIds ? static_cast<gid_t>(gidArg) : 0;

  // Check before changing anything that the id change can succeed.
  struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct caps[2];
  memset(caps, 0, sizeof caps);
  if (syscall(SYS_capget, &hdr, caps) != 0) {
    ThrowErrno(env, errno, "capget", "");
    return env.Undefined();
  }
  if (setIds) {
    uid_t r, e, s;
    gid_t rg, eg, sg;
    getresuid(&r, &e, &s);
    getresgid(&rg, &eg, &sg);
    const bool uidChanges = r != uid || e != uid || s != uid;
    const bool gidChanges = rg != gid || eg != gid || sg != gid || getgroups(0, nullptr) > 0;
    if ((uidChanges && !HasEffective(caps, CAP_SETUID)) || (gidChanges && !HasEffective(caps, CAP_SETGID))) {
      ThrowErrno(env, EPERM, "lockDown", "changing user and group needs root (CAP_SETUID and CAP_SETGID)");
      return env.Undefined();
    }
  }

  // 1. no_new_privs (per thread: the TSYNC filter install below sets it on every thread).
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    ThrowErrno(env, errno, "prctl", "PR_SET_NO_NEW_PRIVS");
    return env.Undefined();
  }
  std::vector<pid_t> unreachable;
  // 2. The bounding set, while CAP_SETPCAP is still there (without it, it stays as it is).
  const bool canDropBounding = HasEffective(caps, CAP_SETPCAP);
  if (canDropBounding) {
    int rc = OnEveryThread(kDropBounding, &unreachable);
    if (rc != 0) {
      ThrowErrno(env, rc, "prctl", "PR_CAPBSET_DROP");
      return env.Undefined();
    }
  }
  // 3. User and group. glibc runs these on every thread.
  if (setIds) {
    if (setgroups(0, nullptr) != 0 && errno != EPERM) {
      ThrowErrno(env, errno, "setgroups", "");
      return env.Undefined();
    }
    if (getgroups(0, nullptr) > 0) {
      ThrowErrno(env, EPERM, "setgroups", "supplementary groups remain");
      return env.Undefined();
    }
    if (setresgid(gid, gid, gid) != 0) {
      ThrowErrno(env, errno, "setresgid", std::to_string(gid));
      return env.Undefined();
    }
    if (setresuid(uid, uid, uid) != 0) {
      ThrowErrno(env, errno, "setresuid", std::to_string(uid));
      return env.Undefined();
    }
  }
  // 4. Every capability set, on every thread.
  int rc = OnEveryThread(kClearCapabilities, &unreachable);
  if (rc != 0) {
    ThrowErrno(env, rc, "capset", "clearing capabilities");
    return env.Undefined();
  }
  if (setIds && uid != 0 && setuid(0) == 0) {
    ThrowErrno(env, EPERM, "lockDown", "root could be regained after setresuid");
    return env.Undefined();
  }
  // 5. The filter, on every thread. TSYNC fails (returns a thread id) if a thread cannot take it.
  std::vector<sock_filter> filter = BuildFilter();
  struct sock_fprog prog = {static_cast<unsigned short>(filter.size()), filter.data()};
  long r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog);
  if (r != 0) {
    ThrowErrno(env, r > 0 ? EAGAIN : errno, "seccomp", r > 0 ? "thread " + std::to_string(r) + " could not take the filter" : "SECCOMP_SET_MODE_FILTER");
    return env.Undefined();
  }
  g_locked.store(true);

  Napi::Object out = Napi::Object::New(env);
  out.Set("boundingSetCleared", Napi::Boolean::New(env, canDropBounding));
  Napi::Array threads = Napi::Array::New(env, unreachable.size());
  for (size_t i = 0; i < unreachable.size(); i++) threads.Set(static_cast<uint32_t>(i), Napi::Number::New(env, unreachable[i]));
  out.Set("unreachableThreads", threads);
  out.Set("filterInstructions", Napi::Number::New(env, static_cast<double>(filter.size())));
  return out;
}

}  // namespace

void InitLockDown(Napi::Env env, Napi::Object exports) { exports.Set("lockDown", Napi::Function::New<LockDown>(env, "lockDown")); }

}  // namespace usernet
