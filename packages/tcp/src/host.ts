/**
 * What connections and listeners need from the TCP protocol object, and what a connection needs
 * from the listener that created it: small interfaces, so that tcp.ts (which implements
 * {@link ListenerHost}), listener.ts and the connection files import each other in one direction
 * only (tcp → listener → connection → host), with no circle.
 *
 * `C` is the connection type and `L` the listener type; the connection files instantiate them with
 * their base class, so this file needs neither.
 */
import type { Counters, NetworkPacketInfo, PacketBuffer, Route, StackContext } from '@usernet/stack';
import type { CongestionControlFactory } from './cc/types.js';
import type { TcpConfig, TcpCounter } from './config.js';
import type { IsnGenerator } from './isn.js';
import type { Segment } from './segment.js';
import type { TcpOptionsOut } from './wire/header.js';

/** The protocol as a connection sees it (one per stack). */
export interface TcpHost<C> {
  readonly ctx: StackContext;
  readonly config: TcpConfig;
  readonly stats: Counters<TcpCounter>;
  readonly isn: IsnGenerator;
  readonly ccFactories: ReadonlyMap<string, CongestionControlFactory>;
  /** Connections in TIME_WAIT, stack-wide (bounded by config.timeWaitLimit). */
  timeWaitCount: number;
  /** Orphaned connections, stack-wide (bounded by config.maxOrphans). */
  orphans: number;
  /** Builds a segment into a fresh PacketBuffer, `len` payload bytes copied from `src` at `pos`. */
  buildSegment(
    route: Route,
    localPort: number,
    remotePort: number,
    seq: number,
    ack: number,
    flags: number,
    window: number,
    opts: TcpOptionsOut,
    src: { copyOut(pos: number, dst: Uint8Array, dstOff: number, len: number): void } | null,
    pos: number,
    len: number,
  ): PacketBuffer;
  /** Queues the connection for endOfBatch() at the end of the current batch. */
  markDirty(c: C): void;
  /** Takes the connection out of the demultiplexing tables. */
  remove(c: C): void;
  /** RFC 5961 §7: the stack-wide challenge-ACK budget allows one more now. */
  allowChallengeAck(now: number): boolean;
}

/** The protocol as a listener sees it. */
export interface ListenerHost<C, L> extends TcpHost<C> {
  insert(c: C, bindFlags?: number): void;
  removeListener(l: L): void;
  forEachChild(l: L, fn: (c: C) => void): void;
  markListenerDirty(l: L): void;
  sendResetFor(seg: Segment, info: NetworkPacketInfo, localPort: number, remotePort: number): void;
  /** Sends a segment without payload (a SYN-ACK from the SYN queue, a SYN-cookie answer). */
  sendControl(route: Route, localPort: number, remotePort: number, seq: number, ack: number, flags: number, window: number, opts: TcpOptionsOut | undefined): void;
}

/** The listener a passive connection belongs to until it is accepted (or gone). */
export interface ConnectionParent<C> {
  /** TCP_DEFER_ACCEPT in ms (0: off). */
  readonly deferAcceptMs: number;
  /** Whether a bare ACK completing the handshake is held back (TCP_DEFER_ACCEPT). */
  deferBareAck(c: C, now: number): boolean;
  /** The handshake completed; false when the accept queue is full (the ACK is then forgotten). */
  childEstablished(c: C): boolean;
  /** The connection closed before it was accepted. */
  childGone(c: C): void;
}
