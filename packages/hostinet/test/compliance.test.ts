/**
 * The socket compliance suite against hostinet, on loopback (127.0.0.1 both ends).
 *
 * ETIMEDOUT: nothing black-holes on loopback, and node:net cannot shorten the kernel's SYN
 * retries (no TCP_SYNCNT). The black hole is a listener with backlog 0 whose one queue slot is
 * taken and which never accepts (a python3 child process): Linux drops further SYNs while the
 * accept queue is full, so a connect there times out after net.ipv4.tcp_syn_retries (6 → 127 s).
 */
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { HOSTINET_DATAGRAM_OPTIONS, HOSTINET_STREAM_OPTIONS, hostinet } from '@usernet/hostinet';
import { CASES, optionCaseTitle, socketCompliance } from '@usernet/socket/compliance';
import { findSocketOption } from '@usernet/socket';

const BLACK_HOLE = `
import socket, sys
l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(0)
c = socket.socket(); c.connect(l.getsockname())
print(l.getsockname()[1], flush=True)
sys.stdin.read()
`;

/** SYN retries → seconds until ETIMEDOUT (RTO 1 s doubling). */
function synTimeoutMs(): number {
  let retries = 6;
  try {
    retries = Number(execFileSync('sysctl', ['-n', 'net.ipv4.tcp_syn_retries'], { encoding: 'utf8' }).trim());
  } catch {
    // keep Linux's default
  }
  return (2 ** (retries + 1) - 1) * 1000;
}

/** 1000 connections take 2000 descriptors in one process; fewer when `ulimit -n` is lower. */
function connections(): number {
  let limit = Infinity;
  try {
    limit = Number(execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim());
  } catch {
    // unknown: assume enough
  }
  const n = Number.isFinite(limit) ? Math.min(1000, Math.floor((limit - 200) / 2)) : 1000;
  if (n < 1000) console.warn(`[hostinet compliance] ulimit -n is ${limit}: the many-connections case runs ${n} connections, not 1000`);
  return n;
}

const provider = hostinet();

for (const family of [4, 6] as const) {
  const host = family === 4 ? '127.0.0.1' : '::1';
  socketCompliance(
    `hostinet (IPv${family})`,
    () =>
      Promise.resolve({
        provider,
        clientProvider: provider,
        serverHost: host,
        clientHost: host,
        family,
        // Assigned to no interface of this host (198.18.0.0/15 and fd00::/8 are the test ranges).
        unusedLocalAddress: family === 4 ? '198.19.255.254' : 'fdff::77',
        supportedOptions: { stream: HOSTINET_STREAM_OPTIONS, datagram: HOSTINET_DATAGRAM_OPTIONS },
        blackHole: async () => {
          const child = spawn('python3', ['-c', BLACK_HOLE], { stdio: ['pipe', 'pipe', 'inherit'] });
          const [line] = (await once(child.stdout, 'data')) as [Buffer];
          return {
            host: '127.0.0.1',
            port: Number(line.toString().trim()),
            close: () => {
              child.stdin.end();
              child.kill();
            },
          };
        },
        close: () => Promise.resolve(),
      }),
    {
      etimedoutMs: synTimeoutMs() + 20_000,
      connections: connections(),
      // The IPv4 run waits the kernel's full SYN timeout (127 s) once; the same kernel path again
      // over ::1 would double the file's run time and show nothing new.
      skip: {
        // node:dgram takes reuseAddr only at creation (hostinet creates the socket at the first
        // bind/connect/send): setting it on a bound socket is EINVAL, never silently ignored.
        [optionCaseTitle(findSocketOption('SO_REUSEADDR')!, 'datagram')]: 'node:dgram sets SO_REUSEADDR only at creation: EINVAL once bound',
        ...(family === 6 ? { [CASES.timedOut]: 'covered by the IPv4 run: the same kernel SYN timeout, 127 s more' } : {}),
      },
    },
  );
}
