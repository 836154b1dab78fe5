/**
 * Tests against the real kernel through a TUN device. They need root (CAP_NET_ADMIN) and
 * /dev/net/tun; without them they are skipped with a printed reason, except when CI=true (then
 * they run and fail). Every test makes its own network namespace and deletes it afterwards.
 */
import type { ChildProcess } from 'node:child_process';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, fstatSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import type { IPv4Protocol } from '@usernet/ipv4';
import { ipv4 } from '@usernet/ipv4';
import type { TunLink } from '@usernet/link-tun';
import { configureTun, openTun } from '@usernet/link-tun';
import type { LinkDispatcher } from '@usernet/stack';
import { checksumValid, createStack, finishChecksum, foldChecksum, PacketBuffer, pseudoHeaderSum, sumBytes } from '@usernet/stack';

const isRoot = process.getuid?.() === 0;
const ci = process.env.CI === 'true';
const reason = !isRoot ? 'not running as root' : !existsSync('/dev/net/tun') ? '/dev/net/tun is missing' : undefined;
const skip = reason !== undefined && !ci;
if (skip) console.log(`[link-tun] skipping TUN device tests: ${reason} (they run as root, and always when CI=true)`);

const KERNEL = '198.18.0.1';
const US = '198.18.0.2';
const K4 = Uint8Array.of(198, 18, 0, 1);
const U4 = Uint8Array.of(198, 18, 0, 2);
const PKG = fileURLToPath(new URL('..', import.meta.url));
const CHILD = fileURLToPath(new URL('./fixtures/child.mjs', import.meta.url));
const WORKER = new URL('./fixtures/worker.mjs', import.meta.url);

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], timeoutMs = 20_000): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Cleanups run after each test, newest first, even when the test failed. */
const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length > 0) {
    try {
      cleanups.pop()!();
    } catch (e) {
      console.error('[link-tun] cleanup failed:', e);
    }
  }
});

function newNetns(): string {
  const ns = `usernet-tun-${randomBytes(4).toString('hex')}`;
  execFileSync('ip', ['netns', 'add', ns]);
  cleanups.push(() => execFileSync('ip', ['netns', 'del', ns]));
  execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  return ns;
}

function devName(): string {
  return `ut${randomBytes(4).toString('hex')}`;
}

/** Moves the interface into `ns` and gives the kernel side 198.18.0.1/24. */
function plumb(name: string, ns: string, mtu = 1500): void {
  execFileSync('ip', ['link', 'set', name, 'netns', ns]);
  configureTun(name, { addresses: [`${KERNEL}/24`], mtu, netns: ns });
}

/** A TUN device in a fresh namespace, with the kernel at 198.18.0.1/24. */
function tunInNetns(offload: boolean): { link: TunLink; ns: string } {
  const ns = newNetns();
  const link = openTun({ name: devName(), offload });
  cleanups.push(() => link.close());
  plumb(link.name, ns);
  return { link, ns };
}

/** A dispatcher that keeps a copy of every packet and passes them on. */
function recorder(next?: LinkDispatcher): LinkDispatcher & { packets: Buffer[] } {
  const packets: Buffer[] = [];
  return {
    packets,
    deliverPackets(batch) {
      for (const p of batch) packets.push(Buffer.from(p.bytes()));
      next?.deliverPackets(batch);
    },
  };
}

async function until(what: string, cond: () => boolean, tries = 100): Promise<void> {
  for (let i = 0; i < tries && !cond(); i++) await sleep(50);
  if (!cond()) throw new Error(`timed out waiting for ${what}`);
}

function isIcmpEchoRequest(b: Buffer): boolean {
  return b.length >= 28 && b[0] === 0x45 && b[9] === 1 && b[20] === 8 && b.subarray(16, 20).equals(U4);
}

/** An IPv4/UDP datagram 198.18.0.2:5555 -> 198.18.0.1:port with room for the vnet header. */
function udpDatagram(port: number, payload: Buffer, checksum: 'partial' | 'full' | 'broken'): PacketBuffer {
  const udpLen = 8 + payload.length;
  const p = PacketBuffer.allocate(64, 20 + udpLen);
  const b = p.bytes();
  b[0] = 0x45;
  b.writeUInt16BE(20 + udpLen, 2);
  b[8] = 64;
  b[9] = 17;
  b.set(U4, 12);
  b.set(K4, 16);
  b.writeUInt16BE(finishChecksum(sumBytes(b, 0, 20)), 10);
  b.writeUInt16BE(5555, 20);
  b.writeUInt16BE(port, 22);
  b.writeUInt16BE(udpLen, 24);
  payload.copy(b, 28);
  const ps = pseudoHeaderSum(U4, K4, 17, udpLen);
  if (checksum === 'partial') {
    b.writeUInt16BE(foldChecksum(ps), 26);
    p.needsChecksum = true;
  } else {
    const c = finishChecksum(sumBytes(b, 20, udpLen, ps)) || 0xffff;
    b.writeUInt16BE(checksum === 'broken' ? c ^ 0x5a5a : c, 26);
  }
  return p;
}

function spawnTracked(cmd: string, args: string[]): ChildProcess & { out: () => string } {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (out += s));
  cleanups.push(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return Object.assign(child, { out: () => out });
}

function waitExit(child: ChildProcess, ms: number): Promise<number | string> {
  return new Promise((resolve, reject) => {
    if (child.exitCode !== null) return resolve(child.exitCode);
    const t = setTimeout(() => reject(new Error(`child still running after ${ms} ms`)), ms);
    child.once('exit', (code, signal) => {
      clearTimeout(t);
      resolve(code ?? String(signal));
    });
  });
}

function hasPython(): boolean {
  try {
    execFileSync('python3', ['-c', 'import socket'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe.skipIf(skip)('TUN device (root, network namespace)', () => {
  for (const offload of [true, false]) {
    describe(offload ? 'with offloads' : 'without offloads', () => {
      it('reports what the kernel accepted', () => {
        const { link } = tunInNetns(offload);
        if (offload) {
          expect(link.offloads.csum).toBe(true); // every kernel with IFF_VNET_HDR
          expect(link.capabilities.checksumOffload).toBe(true);
          expect(link.capabilities.gsoMaxSize).toBe(link.offloads.tso4 ? 65535 : 0);
          console.log(`[link-tun] offloads accepted: ${JSON.stringify(link.offloads)}`);
        } else {
          expect(link.offloads).toEqual({ csum: false, tso4: false, tso6: false, uso: false });
          expect(link.capabilities).toEqual({ checksumOffload: false, gsoMaxSize: 0 });
        }
        expect(link.name).toMatch(/^ut[0-9a-f]{8}$/);
      });

      it('kernel pings arrive as echo requests and a stack answers them', async () => {
        const { link, ns } = tunInNetns(offload);
        const stack = createStack({ network: [ipv4()] });
        cleanups.push(() => stack.close());
        const nic = stack.addNic(link, { name: 'tun' });
        stack.addAddress('tun', `${US}/24`);
        const rec = recorder(nic);
        link.attach(rec);
        const r = await run('ip', ['netns', 'exec', ns, 'ping', '-c', '3', '-i', '0.2', '-W', '2', US]);
        expect(r.code, r.stdout + r.stderr).toBe(0);
        expect(rec.packets.filter(isIcmpEchoRequest).length).toBeGreaterThanOrEqual(3);
        expect(link.stats.PacketsReceived).toBeGreaterThanOrEqual(3);
        expect(link.stats.PacketsSent).toBeGreaterThanOrEqual(3);
        expect(link.stats.ReadBatches).toBeGreaterThanOrEqual(1);
        expect(link.stats.WriteBatches).toBeGreaterThanOrEqual(3);
        expect(link.stats.SendErrors + link.stats.ReceiveErrors + link.stats.MalformedReceived).toBe(0);
      });

      it('a datagram we write reaches a kernel socket (and a broken checksum does not)', async () => {
        const { link, ns } = tunInNetns(offload);
        link.attach(recorder());
        const socat = spawnTracked('ip', ['netns', 'exec', ns, 'socat', '-u', 'UDP-RECV:9000', '-']);
        const good = Buffer.from(`good-${offload ? 'offload' : 'plain'}-datagram`);
        // 'partial' exercises NEEDS_CSUM with offload, software completion without.
        for (let i = 0; i < 100 && !socat.out().includes(good.toString()); i++) {
          expect(link.writePackets([udpDatagram(9000, Buffer.from('BROKEN'), 'broken'), udpDatagram(9000, good, 'partial')])).toBe(2);
          await sleep(50);
        }
        expect(socat.out()).toContain(good.toString());
        expect(socat.out()).not.toContain('BROKEN');
        // A fully checksummed one goes through too.
        const full = Buffer.from('full-checksum');
        for (let i = 0; i < 100 && !socat.out().includes(full.toString()); i++) {
          link.writePackets([udpDatagram(9000, full, 'full')]);
          await sleep(50);
        }
        expect(socat.out()).toContain(full.toString());
        expect(link.stats.SendErrors).toBe(0);
      });

      it('ping -s 30000 works both ways through a stack (fragmentation and reassembly)', async () => {
        const { link, ns } = tunInNetns(offload);
        const stack = createStack({ network: [ipv4()] });
        cleanups.push(() => stack.close());
        stack.addNic(link, { name: 'tun' });
        stack.addAddress('tun', `${US}/24`);
        const r = await run('ip', ['netns', 'exec', ns, 'ping', '-c', '2', '-i', '0.2', '-s', '30000', '-W', '3', US]);
        expect(r.code, r.stdout + r.stderr).toBe(0);
        expect(r.stdout).toContain('30008 bytes from 198.18.0.2');
        const res = await stack.network<IPv4Protocol>('ipv4').ping(KERNEL, { size: 30000, timeoutMs: 5000 });
        expect(res.bytes).toBe(30008);
      });

      it('a UDP_SEGMENT send from the kernel arrives as correct datagrams', async (ctx) => {
        if (!hasPython()) ctx.skip('python3 is needed to send with UDP_SEGMENT');
        const { link, ns } = tunInNetns(offload);
        const rec = recorder();
        link.attach(rec);
        const script = [
          'import socket',
          's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
          's.setsockopt(socket.SOL_UDP, 103, 1000)', // UDP_SEGMENT
          `s.sendto(bytes(i % 251 for i in range(3500)), ('${US}', 7000))`,
        ].join('\n');
        const r = await run('ip', ['netns', 'exec', ns, 'python3', '-c', script]);
        expect(r.code, r.stderr).toBe(0);
        const isOurs = (b: Buffer): boolean => b[0] === 0x45 && b[9] === 17 && b.readUInt16BE(22) === 7000;
        await until('four datagrams', () => rec.packets.filter(isOurs).length >= 4);
        const dgrams = rec.packets.filter(isOurs);
        expect(dgrams.map((b) => b.length - 28)).toEqual([1000, 1000, 1000, 500]);
        const payload = Buffer.concat(dgrams.map((b) => b.subarray(28)));
        for (let i = 0; i < 3500; i++) if (payload[i] !== i % 251) throw new Error(`payload byte ${i} differs`);
        for (const b of dgrams) {
          expect(checksumValid(b, 0, 20)).toBe(true);
          expect(b.readUInt16BE(2)).toBe(b.length);
          // Split segments carry complete checksums; unsplit ones may hold the pseudo-header sum only (NEEDS_CSUM).
          if (offload && link.offloads.uso) expect(checksumValid(b, 20, b.length - 20, pseudoHeaderSum(K4, U4, 17, b.length - 20))).toBe(true);
        }
        if (offload && link.offloads.uso) {
          expect(link.stats.GsoPacketsReceived).toBe(1);
          expect(link.stats.GsoSegmentsSplit).toBe(4);
        } else {
          expect(link.stats.GsoSegmentsSplit).toBe(0);
        }
      });

      it.runIf(offload)('a TCP super-segment we write reaches the kernel whole', async () => {
        const { link } = tunInNetns(offload);
        expect(link.offloads.tso4).toBe(true); // TUN has taken TSO4 since Linux 2.6.27
        const rec = recorder();
        link.attach(rec);
        // 5000 bytes in one segment without ACK to a closed port: the kernel's RST acknowledges
        // seq + 5000 (RFC 9293 §3.10.7.1) only if it took the whole super-segment.
        const len = 5000;
        const p = PacketBuffer.allocate(64, 40 + len);
        const b = p.bytes();
        b[0] = 0x45;
        b.writeUInt16BE(40 + len, 2);
        b[8] = 64;
        b[9] = 6;
        b.set(U4, 12);
        b.set(K4, 16);
        b.writeUInt16BE(finishChecksum(sumBytes(b, 0, 20)), 10);
        b.writeUInt16BE(40000, 20);
        b.writeUInt16BE(9, 22);
        b.writeUInt32BE(1000, 24);
        b[32] = 5 << 4;
        b[33] = 0x08; // PSH
        b.writeUInt16BE(65535, 34);
        for (let i = 0; i < len; i++) b[40 + i] = i & 0xff;
        b.writeUInt16BE(foldChecksum(pseudoHeaderSum(U4, K4, 6, 20 + len)), 36);
        p.needsChecksum = true;
        p.gsoSize = 1400;
        const isRst = (x: Buffer): boolean => x[0] === 0x45 && x[9] === 6 && (x[33]! & 0x04) !== 0 && x.readUInt16BE(22) === 40000;
        for (let i = 0; i < 50 && !rec.packets.some(isRst); i++) {
          expect(link.writePackets([p.clone()])).toBe(1);
          await sleep(50);
        }
        const rst = rec.packets.find(isRst);
        expect(rst, 'no RST from the kernel').toBeDefined();
        expect(rst!.readUInt32BE(28)).toBe(1000 + len);
        expect(link.stats.SendErrors).toBe(0);
      });
    });
  }

  it('close() closes the fd, is idempotent, and later writes are dropped', () => {
    const link = openTun({ name: devName() });
    cleanups.push(() => link.close());
    const fd = link.fd;
    expect(fstatSync(fd).isCharacterDevice()).toBe(true);
    link.attach(recorder());
    link.close();
    expect(() => fstatSync(fd)).toThrow(expect.objectContaining({ code: 'EBADF' }));
    link.close();
    expect(link.isClosed).toBe(true);
    expect(link.writePackets([udpDatagram(9, Buffer.from('x'), 'full')])).toBe(0);
    expect(link.stats.SendDropped).toBe(1);
  });

  it('open errors carry Node-style codes', () => {
    const name = devName();
    const a = openTun({ name });
    cleanups.push(() => a.close());
    expect(() => openTun({ name })).toThrow(expect.objectContaining({ code: 'EBUSY' }));
    expect(() => openTun({ name: 'lo' })).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    expect(() => configureTun('usernetnosuch0', { addresses: [], mtu: 1400 })).toThrow(expect.objectContaining({ code: 'ENODEV' }));
  });

  describe('child processes', () => {
    const built = ['packages/link-tun/dist/index.js', 'packages/stack/dist/index.js', 'packages/ipv4/dist/index.js'].map((f) => new URL(`../../../${f}`, import.meta.url));
    const needBuild = (): void => {
      const missing = built.filter((u) => !existsSync(u));
      if (missing.length > 0) throw new Error(`the child process runs dist/: run \`npx tsc -b\` first (missing ${missing.map((u) => u.pathname).join(', ')})`);
    };

    it('keeps working after dropPrivileges (in a child process)', async () => {
      needBuild();
      const ns = newNetns();
      const name = devName();
      const child = spawnTracked(process.execPath, [CHILD, 'drop', name]);
      await until('the child to open the device', () => child.out().includes('"ready"') || child.exitCode !== null, 200);
      const first = child.out().split('\n')[0]!;
      const info = JSON.parse(first) as { uid: number; gid: number; groups: number[]; configureError: string | null; name: string };
      expect(info.uid).toBe(65534);
      expect(info.gid).toBe(65534);
      // No supplementary groups left (Node lists the effective gid in getgroups()).
      expect(info.groups.filter((g) => g !== 65534)).toEqual([]);
      expect(info.configureError).toBe('EPERM');
      plumb(name, ns);
      const r = await run('ip', ['netns', 'exec', ns, 'ping', '-c', '3', '-i', '0.2', '-W', '2', US]);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      child.stdin!.end();
      expect(await waitExit(child, 10_000)).toBe(0);
      const last = JSON.parse(child.out().trim().split('\n').at(-1)!) as { received: number; sent: number };
      expect(last.received).toBeGreaterThanOrEqual(3);
      expect(last.sent).toBeGreaterThanOrEqual(3);
    });

    interface ThreadStatus {
      tid: number;
      CapEff: string;
      CapPrm: string;
      CapAmb: string;
      SigBlk: string;
    }
    interface LockdownReport {
      before: Record<string, string>;
      after: Record<string, string>;
      threads: ThreadStatus[];
      result: { uid: number; boundingSetCleared: boolean; threadsWithCapabilities: number[] } | null;
      lockError: string | null;
      again: string | null;
      ioctls: Record<string, string>;
      openError: string | null;
      fsOk: boolean;
      workerSays: number;
    }
    const ADMIN_IOCTLS = ['TUNSETPERSIST', 'TUNSETOWNER', 'TUNSETGROUP', 'TUNSETCARRIER', 'TUNSETOFFLOAD', 'TUNSETIFF'];
    const statusLines = (s: Record<string, string>): string =>
      ['Uid', 'CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb', 'NoNewPrivs', 'Seccomp'].map((k) => `${k}: ${s[k]}`).join(', ');

    /** Runs the lockdown child (argv before the script: a wrapper like setpriv), checks it answers pings, returns its report. */
    async function lockedDownChild(wrapper: string[], user: string | undefined): Promise<LockdownReport> {
      needBuild();
      const ns = newNetns();
      const name = devName();
      // A device the old code let a locked process make persistent would outlive the test.
      cleanups.push(() => {
        try {
          execFileSync('ip', ['link', 'del', name], { stdio: 'ignore' });
        } catch {
          // gone with the namespace: the usual case
        }
      });
      const argv = [...wrapper, process.execPath, CHILD, 'lockdown', name, ...(user === undefined ? [] : [user])];
      const child = spawnTracked(argv[0]!, argv.slice(1));
      await until('the child to lock down', () => child.out().includes('"ready"') || child.exitCode !== null, 200);
      const report = JSON.parse(child.out().split('\n').find((l) => l.includes('"ready"')) ?? 'null') as LockdownReport | null;
      expect(report, child.out()).not.toBeNull();
      console.log(`[link-tun] lock-down ${wrapper.length > 0 ? 'with ' + wrapper.join(' ') : 'as root'}:\n  before: ${statusLines(report!.before)}\n  after:  ${statusLines(report!.after)}\n  ioctls: ${JSON.stringify(report!.ioctls)}`);
      // The link still moves packets both ways.
      plumb(name, ns);
      const r = await run('ip', ['netns', 'exec', ns, 'ping', '-c', '3', '-i', '0.2', '-W', '2', US]);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      child.stdin!.end();
      expect(await waitExit(child, 10_000), child.out()).toBe(0);
      const last = JSON.parse(child.out().trim().split('\n').at(-1)!) as { received: number; sent: number };
      expect(last.received).toBeGreaterThanOrEqual(3);
      expect(last.sent).toBeGreaterThanOrEqual(3);
      return report!;
    }

    function expectLockedDown(rep: LockdownReport): void {
      expect(rep.lockError).toBeNull();
      expect(rep.after.NoNewPrivs).toBe('1');
      expect(rep.after.Seccomp).toBe('2'); // SECCOMP_MODE_FILTER
      for (const set of ['CapInh', 'CapPrm', 'CapEff', 'CapAmb']) expect(rep.after[set], set).toBe('0000000000000000');
      // Every attempt to administer the device through its fd is refused by the filter.
      for (const ioctl of ADMIN_IOCTLS) expect(rep.ioctls[ioctl], `${ioctl} ${JSON.stringify(rep.ioctls)}`).toBe('EPERM');
      // No new device either: TUNSETIFF (EPERM), or /dev/net/tun itself when it is 0600 (EACCES).
      expect(['EPERM', 'EACCES']).toContain(rep.openError);
      expect(rep.again).toBe('EALREADY');
      // Node keeps working: timers (we got here), fs through the threadpool, worker threads.
      expect(rep.fsOk).toBe(true);
      expect(rep.workerSays).toBe(42);
    }

    it('lockDown as root: nobody, no capabilities anywhere, no_new_privs, TUN administration refused, packets flow', async (ctx) => {
      if (!hasPython()) ctx.skip('python3 is needed to try the ioctls');
      const rep = await lockedDownChild([], 'nobody');
      expect(rep.before.CapEff).not.toBe('0000000000000000');
      expectLockedDown(rep);
      expect(rep.after.Uid).toBe('65534\t65534\t65534\t65534');
      expect(rep.after.CapBnd).toBe('0000000000000000');
      expect(rep.result!.boundingSetCleared).toBe(true);
      // Leaving uid 0 clears every thread (glibc applies setresuid to all of them).
      expect(rep.result!.threadsWithCapabilities).toEqual([]);
      for (const t of rep.threads) expect([t.tid, t.CapEff, t.CapPrm, t.CapAmb]).toEqual([t.tid, '0000000000000000', '0000000000000000', '0000000000000000']);
    });

    const setpriv = ((): string | undefined => {
      try {
        return execFileSync('sh', ['-c', 'command -v setpriv'], { encoding: 'utf8' }).trim() || undefined;
      } catch {
        return undefined;
      }
    })();

    it('lockDown in a non-root process holding CAP_NET_ADMIN sheds it', async (ctx) => {
      if (!hasPython()) ctx.skip('python3 is needed to try the ioctls');
      if (setpriv === undefined) return ctx.skip('setpriv (util-linux) is needed to start a non-root process with capabilities');
      // nobody with CAP_NET_ADMIN (and CAP_DAC_OVERRIDE, for a /dev/net/tun that is not 0666) as
      // ambient capabilities: the way a service manager hands them out (AmbientCapabilities=).
      const caps = '+net_admin,+dac_override';
      const rep = await lockedDownChild([setpriv, '--reuid=65534', '--regid=65534', '--clear-groups', `--inh-caps=${caps}`, `--ambient-caps=${caps}`], undefined);
      expect(BigInt(`0x${rep.before.CapEff}`) & (1n << 12n)).toBe(1n << 12n); // CAP_NET_ADMIN
      expectLockedDown(rep);
      expect(rep.result!.uid).toBe(65534);
      expect(rep.result!.boundingSetCleared).toBe(false); // needs CAP_SETPCAP; no_new_privs makes it moot
      // A thread that blocks every real-time signal cannot be reached (Node's SIGUSR1 watcher);
      // every other thread has shed its capabilities.
      for (const t of rep.threads) {
        const blocksRt = (BigInt(`0x${t.SigBlk}`) >> 34n) === (1n << 30n) - 1n; // signals 35..64
        if (!blocksRt) expect([t.tid, t.CapEff, t.CapPrm, t.CapAmb]).toEqual([t.tid, '0000000000000000', '0000000000000000', '0000000000000000']);
      }
      expect(rep.result!.threadsWithCapabilities.length).toBeLessThanOrEqual(1);
    });

    it('the addon throws TypeError for typed arrays of the wrong element type (and does not crash)', async () => {
      needBuild();
      const child = spawnTracked(process.execPath, [CHILD, 'typed', devName()]);
      expect(await waitExit(child, 10_000), child.out()).toBe(0);
      const out = JSON.parse(child.out().trim().split('\n').at(-1)!) as Record<string, string>;
      for (const [call, got] of Object.entries(out)) {
        if (call.endsWith('too short')) expect(got, call).toBe('RangeError');
        else if (call === 'write Float64Array packet') expect(got).toBe('0 written, 1 failed');
        else expect(got, call).toBe('TypeError');
      }
      expect(Object.keys(out).length).toBe(12);
    });

    for (const mode of ['unref', 'exit'] as const) {
      it(`a process that exits with a link open exits cleanly (${mode === 'unref' ? 'unref, loop empties' : 'process.exit'})`, async () => {
        needBuild();
        const child = spawnTracked(process.execPath, [CHILD, mode, devName()]);
        expect(await waitExit(child, 10_000), child.out()).toBe(0);
        expect(child.out()).toContain('"ready"');
      });
    }

    for (const mode of ['terminate', 'close-and-end'] as const) {
      it(`a worker thread with a link open ends cleanly (${mode}) and its fd is closed`, async () => {
        needBuild();
        const w = new Worker(WORKER, { workerData: { name: devName(), mode }, execArgv: [] }) // not vitest's --conditions=source;
        cleanups.push(() => void w.terminate());
        const fd = await new Promise<number>((resolve, reject) => {
          w.once('message', resolve);
          w.once('error', reject);
        });
        if (mode === 'terminate') await w.terminate();
        else await new Promise((resolve) => w.once('exit', resolve));
        expect(() => fstatSync(fd)).toThrow(expect.objectContaining({ code: 'EBADF' }));
      });
    }
  });
});

describe('without the device', () => {
  it('openTun rejects bad options before touching the device', () => {
    for (const name of ['a/b', 'with space', 'x'.repeat(16), '..', 'a:b']) {
      expect(() => openTun({ name })).toThrow(expect.objectContaining({ code: 'EINVAL', syscall: 'openTun' }));
    }
    for (const mtu of [67, 65536, 1500.5]) expect(() => openTun({ mtu })).toThrow(expect.objectContaining({ code: 'EINVAL' }));
  });

  it('configureTun validates its arguments', () => {
    expect(() => configureTun('bad name', { addresses: [] })).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    expect(() => configureTun('tun0', { addresses: ['not-a-cidr'] })).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    expect(() => configureTun('tun0', { addresses: [], mtu: 10 })).toThrow(expect.objectContaining({ code: 'EINVAL' }));
  });

  it('the package root holds the addon path', () => {
    expect(existsSync(`${PKG}/binding.gyp`)).toBe(true);
  });
});
