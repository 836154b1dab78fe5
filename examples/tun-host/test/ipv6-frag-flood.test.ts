/**
 * An IPv6 fragment flood against usernet-host on a TUN in a namespace: 3,000 first fragments
 * (more-fragments set, never completed) of distinct identifications, forged with a python3
 * AF_PACKET socket on the kernel side of the TUN. Each is followed by 64 KiB filler packets
 * (to an address that is not the host's, dropped at once) so that every fragment arrives in a
 * different 1 MiB read slab, as an attacker spreading its fragments would arrange. Reassembly
 * that kept views of the slabs held 1 MiB per fragment (about 3 GiB); a copy holds about 1 KiB.
 * The host must stay small and keep answering ping -6. Root only (skipped with a reason
 * otherwise, never when CI=true).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HostProcess } from './lab.js';
import { Lab, run } from './lab.js';

const HOST6 = 'fd00::2';
const FRAGMENTS = 3000;
const FILLERS = 15;
const MiB = 1024 * 1024;

const FLOOD_PY = String.raw`
import socket, struct, sys, time
ifname, count, fillers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
src = socket.inet_pton(socket.AF_INET6, 'fd00::1')
dst = socket.inet_pton(socket.AF_INET6, 'fd00::2')
other = socket.inet_pton(socket.AF_INET6, 'fd00::3')
s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x86DD))
s.bind((ifname, 0x86DD))
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 24)
# UDP header (to the discard port) and 48 bytes: 56, a multiple of 8 as a non-last fragment needs.
data = struct.pack('!HHHH', 40000, 9, 8 + 48, 0) + bytes(48)
pad = bytes(65535 - 40)
filler = struct.pack('!IHBB', 0x60000000, len(pad), 59, 64) + src + other + pad
for i in range(count):
    frag = struct.pack('!BBHI', 17, 0, 0x0001, 0x10000 + i)  # offset 0, M set, a new identification
    pl = frag + data
    s.sendto(struct.pack('!IHBB', 0x60000000, len(pl), 44, 64) + src + dst + pl, (ifname, 0x86DD))
    for _ in range(fillers):
        s.sendto(filler, (ifname, 0x86DD))
    time.sleep(0.0002 * fillers)
print('sent', count)
`;

function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (m === null) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]);
}

if (!run) console.log('ipv6-frag-flood: skipped (needs root for a network namespace and a TUN device)');

describe.skipIf(!run)('usernet-host under an IPv6 first-fragment flood', () => {
  const lab = new Lab();
  let host: HostProcess;

  beforeAll(async () => {
    lab.setup();
    // MTU 65535, so that the kernel side can send 64 KiB filler packets into the TUN.
    host = await lab.startHost(['--mtu', '65535', '--address', `${HOST6}/64`, '--peer', 'fd00::1/64']);
  });
  afterAll(() => lab.cleanup());

  it('stays small while 3,000 never-completed fragments sit in reassembly, and still answers ping -6', async () => {
    const script = join(lab.dir, 'flood.py');
    writeFileSync(script, FLOOD_PY);
    const ping = () => /(\d+) received/.exec(lab.exec('ping', ['-6', '-c', '3', '-i', '0.2', '-W', '2', HOST6], undefined, 30_000).stdout)?.[1];
    expect(ping()).toBe('3');
    const before = rssKiB(host.pid);
    const r = lab.exec('python3', [script, 'utun0', String(FRAGMENTS), String(FILLERS)], undefined, 120_000);
    expect(r.stderr).toBe('');
    expect(r.stdout).toContain(`sent ${FRAGMENTS}`);
    await new Promise((res) => setTimeout(res, 1000));
    const after = rssKiB(host.pid);
    console.log(`usernet-host VmRSS before ${(before / 1024).toFixed(0)} MiB, after ${FRAGMENTS} first fragments ${(after / 1024).toFixed(0)} MiB`);
    expect(ping()).toBe('3');
    const { stats } = await host.stop();
    const ip6 = stats.stack.ipv6!;
    // Nearly all arrived (the TUN queue may drop a few) and were held, none completed.
    expect(ip6.FragmentsReceived).toBeGreaterThan(FRAGMENTS * 0.9);
    expect(ip6.ReassembledDatagrams).toBe(0);
    // Views of the read slabs would hold about 1 MiB per fragment: 3 GiB. Copies hold the
    // reassembly limit (4 MiB) plus garbage the collector has not reached yet.
    expect((after - before) * 1024).toBeLessThan(128 * MiB);
  }, 180_000);
});
