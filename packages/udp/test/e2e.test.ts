import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import type { UsernetError } from '@usernet/stack';
import { createStack, ManualClock, SeededRandom } from '@usernet/stack';
import { createMemoryLinkPair } from '@usernet/link-memory';
import { ipv4 } from '@usernet/ipv4';
import type { UDPProtocol } from '@usernet/udp';
import { udp } from '@usernet/udp';

/** Two stacks, 198.18.0.1/24 and 198.18.0.2/24, over an in-process link in virtual time. */
function pair(checksumOffload: boolean) {
  const clock = new ManualClock();
  const [la, lb] = createMemoryLinkPair({ clock, checksumOffload, mtu: 1500 });
  const a = createStack({ network: [ipv4()], transport: [udp()], clock, random: new SeededRandom(1) });
  const b = createStack({ network: [ipv4()], transport: [udp()], clock, random: new SeededRandom(2) });
  a.addNic(la, { name: 'a0' });
  b.addNic(lb, { name: 'b0' });
  a.addAddress('a0', '198.18.0.1/24');
  b.addAddress('b0', '198.18.0.2/24');
  return { clock, a, b, ua: a.transport<UDPProtocol>('udp'), ub: b.transport<UDPProtocol>('udp') };
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

describe.each([false, true])('UDP over IPv4 over a memory link (checksumOffload: %s)', (checksumOffload) => {
  it('echoes datagrams from 1 byte to 60 KiB (fragmented over a 1500-byte MTU) byte for byte', () => {
    const { clock, a, b, ua, ub } = pair(checksumOffload);
    // Echo server on 198.18.0.2:7: everything it receives goes back to the sender.
    const server = ub.createEndpoint();
    server.bind('198.18.0.2', 7);
    server.onReadable = () => {
      for (let d = server.receive(); d !== null; d = server.receive()) server.send(d.data, d.port, d.address);
    };
    const client = ua.createEndpoint();
    client.connect('198.18.0.2', 7);
    const echoed: Uint8Array[] = [];
    client.onReadable = () => {
      for (let d = client.receive(); d !== null; d = client.receive()) {
        expect([d.address.toString(), d.port]).toEqual(['198.18.0.2', 7]);
        echoed.push(d.data);
      }
    };
    const sizes = [1, 2, 7, 8, 9, 100, 1471, 1472, 1473, 1480, 1481, 2960, 2961, 4096, 8192, 16_385, 32_768, 50_000, 60 * 1024, 65_507];
    const rnd = new SeededRandom(42);
    const sent: Uint8Array[] = [];
    for (const size of sizes) {
      const data = new Uint8Array(size);
      rnd.fill(data);
      sent.push(data);
      client.send(data);
      // One at a time, so the receive buffers (212992 bytes) never overflow.
      expect(clock.runUntil(() => echoed.length === sent.length, clock.now() + 1000)).toBe(true);
    }
    expect(echoed.map((d) => d.length)).toEqual(sizes);
    expect(echoed.map(sha)).toEqual(sent.map(sha));
    // Over IPv4, 65507 bytes is the largest UDP payload; one more is EMSGSIZE from the network.
    let err: UsernetError | undefined;
    try {
      client.send(new Uint8Array(65_508));
    } catch (e) {
      err = e as UsernetError;
    }
    expect(err?.code).toBe('EMSGSIZE');
    for (const u of [ua, ub]) {
      expect(u.stats.ChecksumErrors).toBe(0);
      expect(u.stats.MalformedPacketsReceived).toBe(0);
      expect(u.stats.PacketsDelivered).toBe(sizes.length);
      expect(u.stats.PacketsSent).toBe(sizes.length);
    }
    expect(a.stats()['ipv4']!.FragmentedDatagramsSent).toBeGreaterThan(0);
    a.close();
    b.close();
  });

  it('surfaces ICMP port unreachable as ECONNREFUSED on a connected endpoint', () => {
    const { clock, ua, ub, a, b } = pair(checksumOffload);
    const conn = ua.createEndpoint();
    conn.connect('198.18.0.2', 9999); // nobody listens there
    const unconnected = ua.createEndpoint();
    const errors: string[] = [];
    conn.onError = (e) => errors.push(e.code);
    unconnected.onError = (e) => errors.push(`unconnected ${e.code}`);
    conn.send(new TextEncoder().encode('anyone?'));
    unconnected.send(new TextEncoder().encode('anyone?'), 9999, '198.18.0.2');
    clock.runUntil(() => errors.length > 0, clock.now() + 1000);
    clock.advance(10);
    expect(errors).toEqual(['ECONNREFUSED']);
    expect(ub.stats.UnknownPortErrors).toBe(2);
    expect(ua.stats.ControlMessagesReceived).toBe(2);
    expect(ua.stats.ControlMessagesIgnored).toBe(1);
    let code: string | undefined;
    try {
      conn.send(new Uint8Array(1));
    } catch (e) {
      code = (e as UsernetError).code;
    }
    expect(code).toBe('ECONNREFUSED');
    conn.send(new Uint8Array(1)); // reported once, then cleared
    unconnected.send(new Uint8Array(1), 9999, '198.18.0.2');
    a.close();
    b.close();
  });
});
