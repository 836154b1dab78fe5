// The wire effect of forged ICMP "fragmentation needed" / "packet too big" (RFC 5927) on an
// established TCP connection between two usernet stacks over link-memory, in virtual time.
// For each forgery it prints the path MTU and MSS it leaves behind, and what 10 full segments of
// data then look like on the wire (IP packets, IPv4 fragments / IPv6 fragment headers).
//   node bench/pmtu-forgery.js        (after `npx tsc -b`)
import { createStack, IPAddress, ManualClock, PacketBuffer, SeededRandom } from '@usernet/stack';
import { createMemoryLinkPair } from '@usernet/link-memory';
import { emitIcmp, emitIpv4Header, ipv4 } from '@usernet/ipv4';
import { emitIcmpv6, ipv6 } from '@usernet/ipv6';
import { tcp } from '@usernet/tcp';
import { udp } from '@usernet/udp';

class Tap {
  constructor(inner) {
    this.inner = inner;
    this.sent = [];
    this.d = null;
    /** A router on the path with this MTU: longer packets are dropped (0: none). */
    this.pathMtu = 0;
    this.dropped = [];
  }
  get mtu() {
    return this.inner.mtu;
  }
  get capabilities() {
    return this.inner.capabilities;
  }
  attach(d) {
    this.d = d;
    this.inner.attach(d);
  }
  writePackets(pkts) {
    const pass = [];
    for (const p of pkts) {
      const b = Buffer.from(p.bytes());
      if (this.pathMtu > 0 && b.length > this.pathMtu) this.dropped.push(b);
      else {
        this.sent.push(b);
        pass.push(p);
      }
    }
    return this.inner.writePackets(pass) + (pkts.length - pass.length);
  }
  close() {
    this.inner.close();
  }
  inject(bytes) {
    this.d.deliverPackets([PacketBuffer.copyOf(bytes, 64)]);
  }
}

function setup(family) {
  const clock = new ManualClock();
  const [la, lb] = createMemoryLinkPair({ clock, mtu: 1500 });
  const tap = new Tap(la);
  const mk = (seed) => createStack({ network: [ipv4(), ipv6()], transport: [tcp(), udp()], clock, random: new SeededRandom(seed) });
  const a = mk(1);
  const b = mk(2);
  a.addNic(tap, { name: 'a0' });
  b.addNic(lb, { name: 'b0' });
  a.addAddress('a0', '198.18.0.1/24');
  a.addAddress('a0', 'fd00::1/64');
  b.addAddress('b0', '198.18.0.2/24');
  b.addAddress('b0', 'fd00::2/64');
  const peer = family === 4 ? '198.18.0.2' : 'fd00::2';
  const listener = b.transport('tcp').listen({ family, port: 5001 });
  let received = 0;
  listener.onConnection = () => {
    for (let c = listener.accept(); c !== null; c = listener.accept()) {
      const s = c;
      s.onReadable = () => {
        for (let d = s.read(); d !== null; d = s.read()) received += d.length;
      };
    }
  };
  const conn = a.transport('tcp').connect({ address: peer, port: 5001 });
  clock.runUntil(() => conn.info().state === 'ESTABLISHED', 1000);
  const net = a.network(family === 4 ? 'ipv4' : 'ipv6');
  const route = a.findRoute(IPAddress.parse(peer));
  return { clock, a, tap, conn, net, route, family, peer, received: () => received };
}

/** Writes 10 full segments and reports what went on the wire. */
function tenSegments(s) {
  s.tap.sent.length = 0;
  const before = s.received();
  const n = 10 * s.conn.info().mss;
  s.conn.write(new Uint8Array(n));
  s.clock.runUntil(() => s.received() - before === n, s.clock.now() + 60_000);
  return wire(s, s.received() - before === n);
}

/** What went on the wire since tap.sent was last emptied (data packets only). */
function wire(s, delivered) {
  let packets = 0;
  let fragments = 0;
  let maxLen = 0;
  for (const p of s.tap.sent) {
    const v4 = p[0] >> 4 === 4;
    const proto = v4 ? p[9] : p[6];
    if (proto !== 6 && proto !== 44) continue;
    const tcpLen = v4 ? p.length - 20 : p.length - 40;
    if (proto === 6 && tcpLen <= 32 && !(v4 && (p.readUInt16BE(6) & 0x3fff) !== 0)) continue; // pure ACKs
    packets++;
    maxLen = Math.max(maxLen, p.length);
    if (v4 ? (p.readUInt16BE(6) & 0x3fff) !== 0 : proto === 44) fragments++;
  }
  return { packets, fragments, maxLen, delivered };
}

function icmp4(s, quoted, mtu) {
  const len = 8 + quoted.length;
  const buf = new Uint8Array(20 + len);
  emitIcmp({ type: 3, code: 4, restOfHeader: mtu & 0xffff, data: quoted }, buf, 20);
  emitIpv4Header({ src: IPAddress.parse('198.18.0.254'), dst: IPAddress.parse('198.18.0.1'), protocol: 1, ttl: 64, tos: 0, id: 1, dontFragment: false, moreFragments: false, fragmentOffset: 0, payloadLength: len, options: new Uint8Array(0) }, buf, 0);
  s.tap.inject(buf);
}

function icmp6(s, quoted, mtu) {
  const router = IPAddress.parse('fd00::99');
  const me = IPAddress.parse('fd00::1');
  const buf = Buffer.alloc(40 + 8 + quoted.length);
  buf[0] = 0x60;
  buf.writeUInt16BE(8 + quoted.length, 4);
  buf[6] = 58;
  buf[7] = 64;
  buf.set(router.bytes, 8);
  buf.set(me.bytes, 24);
  emitIcmpv6({ type: 2, code: 0, restOfHeader: mtu, data: quoted }, buf, 40, router.bytes, me.bytes);
  s.tap.inject(buf);
}

/** An invented packet from us (UDP 40000 -> 53, DF) as a router would quote it. */
function inventedUdp(s) {
  if (s.family === 4) {
    const q = Buffer.alloc(28);
    q.set([0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17]);
    q.set(IPAddress.parse('198.18.0.1').bytes, 12);
    q.set(IPAddress.parse(s.peer).bytes, 16);
    q.writeUInt16BE(40000, 20);
    q.writeUInt16BE(53, 22);
    return q;
  }
  const q = Buffer.alloc(48);
  q[0] = 0x60;
  q.writeUInt16BE(8, 4);
  q[6] = 17;
  q[7] = 64;
  q.set(IPAddress.parse('fd00::1').bytes, 8);
  q.set(IPAddress.parse(s.peer).bytes, 24);
  q.writeUInt16BE(40000, 40);
  q.writeUInt16BE(53, 42);
  return q;
}

/** The last data segment we sent, its sequence number moved by `delta`, as a router would quote it. */
function ourSegment(s, delta, list = s.tap.sent) {
  const hl = s.family === 4 ? 20 : 40;
  const p = [...list].reverse().find((x) => (s.family === 4 ? x[9] : x[6]) === 6 && x.length > hl + 40);
  const q = Buffer.from(p.subarray(0, hl + 20));
  q.writeUInt32BE((q.readUInt32BE(hl + 4) + delta) >>> 0, hl + 4);
  return q;
}

function row(label, s, w) {
  const pmtu = s.net.pathMtu(s.route);
  console.log(
    `${label.padEnd(62)} pmtu ${String(pmtu).padStart(4)}  mss ${String(s.conn.info().mss).padStart(4)}  ` +
      `10 segs -> ${String(w.packets).padStart(2)} packets, ${String(w.fragments).padStart(2)} fragments, max ${w.maxLen} B${w.delivered ? '' : '  NOT DELIVERED'}`,
  );
}

for (const family of [4, 6]) {
  const floor = family === 4 ? 552 : 1280;
  console.log(`IPv${family}:`);
  {
    const s = setup(family);
    row('baseline', s, tenSegments(s));
    (family === 4 ? icmp4 : icmp6)(s, inventedUdp(s), floor);
    row('blind forgery quoting an invented UDP packet', s, tenSegments(s));
  }
  {
    const s = setup(family);
    tenSegments(s);
    (family === 4 ? icmp4 : icmp6)(s, ourSegment(s, 1_000_000), floor);
    row('4-tuple, sequence number outside [SND.UNA, SND.NXT)', s, tenSegments(s));
  }
  {
    // A real router with a 552/1280-byte MTU on the path drops 10 segments and reports it.
    const s = setup(family);
    s.tap.pathMtu = floor;
    const n = 10 * s.conn.info().mss;
    s.conn.write(new Uint8Array(n));
    s.clock.advance(0);
    s.tap.sent.length = 0;
    (family === 4 ? icmp4 : icmp6)(s, ourSegment(s, 0, s.tap.dropped.slice(0, 1)), floor);
    s.clock.runUntil(() => s.received() === n, s.clock.now() + 60_000);
    row('valid report from a real 552/1280 router: re-sending 10 segs', s, wire(s, s.received() === n));
    row('... then 10 more segments', s, tenSegments(s));
    s.clock.advance(10 * 60_000 + 1);
    s.tap.pathMtu = 0;
    row('... path MTU back to 1500, 10 minutes later', s, tenSegments(s));
  }
}
