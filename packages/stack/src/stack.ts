import { IPAddress, Subnet } from './address.js';
import type { PacketBuffer } from './buffer.js';
import type { Clock } from './clock.js';
import { RealClock } from './clock.js';
import { errnoError, UsernetError } from './errors.js';
import { NIC } from './nic.js';
import type { Random } from './random.js';
import { CryptoRandom } from './random.js';
import type {
  ControlMessage,
  DeliverResult,
  LinkEndpoint,
  NetworkPacketInfo,
  NetworkProtocol,
  NetworkProtocolFactory,
  NicHandle,
  Route,
  StackContext,
  TransportProtocol,
  TransportProtocolFactory,
} from './registration.js';
import type { RouteEntry } from './route.js';
import { RouteTable } from './route.js';
import type { Counters } from './stats.js';

export interface StackOptions {
  /** Network protocol plugins, like `[ipv4()]`. At least one. */
  network: readonly NetworkProtocolFactory[];
  /** Transport protocol plugins, like `[udp()]`. */
  transport?: readonly TransportProtocolFactory[];
  /** Time source; a {@link RealClock} by default. Tests pass a ManualClock. */
  clock?: Clock;
  /** Randomness; a {@link CryptoRandom} by default. Simulations pass a SeededRandom. */
  random?: Random;
}

export interface AddNicOptions {
  /** Interface name; `nic<N>` by default. */
  name?: string;
}

export interface AddRouteOptions {
  /** `198.18.0.0/15`, `0.0.0.0/0` (default route), `fd00::/8`, … */
  destination: string | Subnet;
  /** Next hop; omit for an on-link route. */
  gateway?: string | IPAddress;
  /** The NIC (object, id or name). */
  nic: NIC | number | string;
  metric?: number;
}

/** A configuration mistake found while assembling a stack. */
export class StackAssemblyError extends Error {
  readonly code = 'ERR_USERNET_ASSEMBLY';
  constructor(message: string) {
    super(message);
    this.name = 'StackAssemblyError';
  }
}

/**
 * A network stack: NICs, addresses, routes, and the protocols plugged into it. Inbound packets
 * go link → NIC → network protocol (by IP version) → transport (by protocol number).
 */
export class Stack {
  readonly clock: Clock;
  readonly random: Random;
  private readonly nicList: NIC[] = [];
  private readonly routes = new RouteTable();
  private readonly networksByVersion: (NetworkProtocol | undefined)[] = [];
  private readonly networkList: NetworkProtocol[] = [];
  private readonly transportsByNumber: (TransportProtocol | undefined)[] = new Array<TransportProtocol | undefined>(256);
  private readonly transportList: TransportProtocol[] = [];
  private readonly flushers: TransportProtocol[] = [];
  private nextNicId = 1;
  private closed = false;
  /** The view of the stack that protocols get. */
  readonly context: StackContext;

  constructor(options: StackOptions) {
    this.clock = options.clock ?? new RealClock();
    this.random = options.random ?? new CryptoRandom();
    this.context = this.makeContext();
    const networks: readonly NetworkProtocolFactory[] = options.network;
    if (networks === undefined || networks.length === 0) {
      throw new StackAssemblyError('a stack needs at least one network protocol (for example network: [ipv4()])');
    }
    for (const factory of networks) {
      if (typeof factory !== 'function') throw new StackAssemblyError('network entries must be protocol factories, like ipv4()');
      const p = factory(this.context);
      if (this.networksByVersion[p.version] !== undefined) {
        throw new StackAssemblyError(`two network protocols for IP version ${p.version}`);
      }
      this.networksByVersion[p.version] = p;
      this.networkList.push(p);
    }
    for (const factory of options.transport ?? []) {
      if (typeof factory !== 'function') throw new StackAssemblyError('transport entries must be protocol factories, like udp()');
      const t = factory(this.context);
      if (this.transportsByNumber[t.protocol] !== undefined) {
        throw new StackAssemblyError(`two transport protocols for IP protocol ${t.protocol}`);
      }
      this.transportsByNumber[t.protocol] = t;
      this.transportList.push(t);
      if (t.flush !== undefined) this.flushers.push(t);
    }
  }

  // -- NICs and addresses -------------------------------------------------------------------

  /** Adds a NIC on `link` and starts receiving from it. */
  addNic(link: LinkEndpoint, options: AddNicOptions = {}): NIC {
    this.assertOpen();
    const id = this.nextNicId++;
    const name = options.name ?? `nic${id}`;
    if (this.nicList.some((n) => n.name === name)) throw errnoError('EEXIST', 'addNic', `NIC ${name} exists`);
    const nic = new NIC(id, name, link, {
      networkForVersion: (v) => this.networksByVersion[v],
      endBatch: () => this.endBatch(),
    });
    this.nicList.push(nic);
    nic.start();
    return nic;
  }

  /** The NICs, in the order added. */
  get nics(): readonly NIC[] {
    return this.nicList;
  }

  /** Finds a NIC by object, id or name; throws ENODEV. */
  nic(ref: NIC | number | string): NIC {
    const nic =
      ref instanceof NIC
        ? this.nicList.find((n) => n === ref)
        : this.nicList.find((n) => (typeof ref === 'number' ? n.id === ref : n.name === ref));
    if (nic === undefined) throw errnoError('ENODEV', undefined, `no NIC ${String(ref instanceof NIC ? ref.name : ref)}`);
    return nic;
  }

  /**
   * Assigns `198.18.0.2/24` (address with prefix) to a NIC and, like Linux, adds the connected
   * route for its subnet. Throws EEXIST when the address is already assigned on that NIC.
   */
  addAddress(ref: NIC | number | string, cidr: string | Subnet): void {
    const nic = this.nic(ref);
    const s = typeof cidr === 'string' ? Subnet.parse(cidr) : cidr;
    if (this.networksByVersion[s.family] === undefined) {
      throw errnoError('EAFNOSUPPORT', 'addAddress', `no IPv${s.family} protocol in this stack`);
    }
    if (s.address.isUnspecified || s.address.isMulticast) throw errnoError('EINVAL', 'addAddress', s.toString());
    if (nic.hasAddress(s.address)) throw errnoError('EEXIST', 'addAddress', s.toString());
    nic.addAddress(s);
    const net = new Subnet(s.network, s.prefixLength);
    this.routes.add({ destination: net, gateway: null, nic, metric: 0, connected: true });
  }

  /** Removes an address and its connected route. */
  removeAddress(ref: NIC | number | string, address: string | IPAddress): void {
    const nic = this.nic(ref);
    const a = typeof address === 'string' ? IPAddress.parse(address) : address;
    const s = nic.removeAddress(a);
    if (s === undefined) throw errnoError('EADDRNOTAVAIL', 'removeAddress', a.toString());
    const stillCovered = nic.addresses.some((x) => x.prefixLength === s.prefixLength && new Subnet(x.network, x.prefixLength).contains(s.address));
    if (!stillCovered) {
      this.routes.remove((e) => e.connected && e.nic === nic && e.destination.prefixLength === s.prefixLength && e.destination.contains(s.address));
    }
  }

  /** Adds a route. A default route is `{ destination: '0.0.0.0/0', gateway: '198.18.0.1', nic }`. */
  addRoute(options: AddRouteOptions): void {
    const nic = this.nic(options.nic);
    const d = typeof options.destination === 'string' ? Subnet.parse(options.destination) : options.destination;
    const gw = options.gateway === undefined ? null : typeof options.gateway === 'string' ? IPAddress.parse(options.gateway) : options.gateway;
    if (gw !== null && gw.family !== d.family) throw errnoError('EINVAL', 'addRoute', 'gateway family differs from destination');
    this.routes.add({ destination: new Subnet(d.network, d.prefixLength), gateway: gw, nic, metric: options.metric ?? 0, connected: false });
  }

  /** The routing table, best first. */
  get routeTable(): readonly RouteEntry[] {
    return this.routes.list();
  }

  // -- Protocols ----------------------------------------------------------------------------

  /** The network protocol named `name` (like `ipv4`); throws EPROTONOSUPPORT. */
  network<T extends NetworkProtocol = NetworkProtocol>(name: string): T {
    const p = this.networkList.find((x) => x.name === name);
    if (p === undefined) throw errnoError('EPROTONOSUPPORT', undefined, `no network protocol ${name} in this stack`);
    return p as T;
  }

  /** The transport named `name` (like `udp`); throws EPROTONOSUPPORT. */
  transport<T extends TransportProtocol = TransportProtocol>(name: string): T {
    const p = this.transportList.find((x) => x.name === name);
    if (p === undefined) throw errnoError('EPROTONOSUPPORT', undefined, `no transport protocol ${name} in this stack`);
    return p as T;
  }

  /** All counters, by protocol name and by NIC (`nic:<name>`), as a snapshot. */
  stats(): Record<string, Counters> {
    const out: Record<string, Counters> = {};
    for (const p of this.networkList) out[p.name] = { ...p.stats };
    for (const t of this.transportList) out[t.name] = { ...t.stats };
    for (const n of this.nicList) out[`nic:${n.name}`] = { ...n.stats };
    return out;
  }

  /** Finds a route; see {@link StackContext.findRoute}. */
  findRoute(remote: IPAddress, local?: IPAddress | null, nicId?: number): Route {
    return this.context.findRoute(remote, local, nicId);
  }

  /** Closes every protocol and NIC (and with them their links). Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.transportList) t.close?.();
    for (const n of this.networkList) n.close?.();
    for (const nic of this.nicList) nic.close();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  private assertOpen(): void {
    if (this.closed) throw errnoError('EBADF', undefined, 'the stack is closed');
  }

  private endBatch(): void {
    // Every transport gets its end-of-batch turn even when an earlier one throws (an
    // application callback's error); the first error is rethrown after all have run.
    const f = this.flushers;
    let failed = false;
    let first: unknown;
    for (let i = 0; i < f.length; i++) {
      try {
        f[i]!.flush!();
      } catch (e) {
        if (!failed) first = e;
        failed = true;
      }
    }
    if (failed) throw first;
  }

  private makeContext(): StackContext {
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- closures below read the stack's live tables
    const stack = this;
    const resolve = (remote: IPAddress, local: IPAddress | null | undefined, nicId: number | undefined): Route => {
      if (!(remote instanceof IPAddress)) throw errnoError('EINVAL', 'route', 'remote must be an IPAddress');
      const net = stack.networksByVersion[remote.family];
      if (net === undefined) throw errnoError('EAFNOSUPPORT', 'route', `no IPv${remote.family} in this stack`);
      let localNic: NIC | undefined;
      if (local != null && !local.isUnspecified) {
        if (local.family !== remote.family) throw errnoError('EAFNOSUPPORT', 'route', 'local and remote families differ');
        localNic = stack.nicList.find((n) => n.hasAddress(local));
        if (localNic === undefined) throw errnoError('EADDRNOTAVAIL', 'route', local.toString());
      }
      // IPv4 limited broadcast goes out of the chosen (or first IPv4) NIC, on-link.
      if (remote.isLimitedBroadcast) {
        const nic =
          (nicId !== undefined ? stack.nicList.find((n) => n.id === nicId) : undefined) ??
          localNic ??
          stack.nicList.find((n) => n.addresses.some((a) => a.family === 4));
        const src = local != null && !local.isUnspecified ? local : nic?.addresses.find((a) => a.family === 4)?.address;
        if (nic === undefined || src === undefined) throw errnoError('ENETUNREACH', 'route', remote.toString());
        return { nic, network: net, local: src, remote, nextHop: null, broadcast: true };
      }
      // Prefer a route through the NIC that owns the requested source address (weak host
      // model otherwise, as Linux).
      const entry =
        (localNic !== undefined && nicId === undefined ? stack.routes.lookup(remote, localNic.id) : undefined) ??
        stack.routes.lookup(remote, nicId);
      if (entry === undefined) throw errnoError('ENETUNREACH', 'route', remote.toString());
      const nic = entry.nic;
      let src = local != null && !local.isUnspecified ? local : undefined;
      if (src === undefined) {
        // Prefer the NIC's address on the next hop's subnet (Subnet.contains compares only the
        // prefix bits), then any of its addresses of the family, then (as Linux) any NIC's.
        const target = entry.gateway ?? remote;
        let firstOfFamily: IPAddress | undefined;
        for (const a of nic.addresses) {
          if (a.family !== remote.family) continue;
          firstOfFamily ??= a.address;
          if (a.contains(target)) {
            src = a.address;
            break;
          }
        }
        src ??= firstOfFamily;
        for (let i = 0; src === undefined && i < stack.nicList.length; i++) {
          for (const a of stack.nicList[i]!.addresses) {
            if (a.family === remote.family) {
              src = a.address;
              break;
            }
          }
        }
        if (src === undefined) throw errnoError('EADDRNOTAVAIL', 'route', `no IPv${remote.family} source address`);
      }
      let broadcast = false;
      for (const a of nic.addresses) if (a.broadcast !== undefined && a.broadcast.equals(remote)) broadcast = true;
      return { nic, network: net, local: src, remote, nextHop: entry.gateway, broadcast };
    };
    return {
      clock: this.clock,
      random: this.random,
      network: (v) => stack.networksByVersion[v],
      networks: () => stack.networkList,
      transport: (p) => stack.transportsByNumber[p],
      findRoute: (remote, local, nicId) => resolve(remote, local, nicId),
      nicForAddress: (a): NicHandle | undefined => stack.nicList.find((n) => n.hasAddress(a)),
      isLocalAddress: (a) => stack.nicList.some((n) => n.hasAddress(a)),
      isLocalAddressBytes: (buf, off, family) => {
        const nics = stack.nicList;
        for (let i = 0; i < nics.length; i++) if (nics[i]!.hasAddressBytes(buf, off, family)) return true;
        return false;
      },
      deliverTransport: (protocol: number, info: NetworkPacketInfo, pkt: PacketBuffer): DeliverResult | undefined =>
        stack.transportsByNumber[protocol]?.handlePacket(info, pkt),
      deliverControl: (protocol: number, msg: ControlMessage): boolean => stack.transportsByNumber[protocol]?.handleControl(msg) ?? false,
    };
  }
}

/**
 * Assembles a stack from plugins (DESIGN.md rule 4):
 * `createStack({ network: [ipv4()], transport: [udp()] })`.
 * A missing or conflicting piece fails here with a {@link StackAssemblyError}.
 */
export function createStack(options: StackOptions): Stack {
  return new Stack(options);
}

export { UsernetError };
