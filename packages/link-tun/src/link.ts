/**
 * The Linux TUN device as a usernet link: batched reads into slabs driven by a libuv poll
 * handle on the main loop, batched writes, virtio-net offloads (checksum, TSO, USO).
 */
import type { Counters, LinkCapabilities, LinkDispatcher, LinkEndpoint, UsernetError } from '@usernet/stack';
import { createCounters, DEFAULT_HEADROOM, errnoError, PacketBuffer } from '@usernet/stack';
import type { NativeTunHandle } from './native.js';
import { errnoToError, fromNativeError, loadNative } from './native.js';
import { completeChecksum, prependVnetHeader, VNET_HDR_LEN, VnetReceiver } from './vnet.js';

export interface TunOptions {
  /** Interface name (<= 15 chars). Omitted: the kernel picks one (tun0, tun1, ...). */
  name?: string;
  /** The link MTU the stack uses for sending without GSO, and that configureTun sets on the kernel side. Default 1500. 68..65535. */
  mtu?: number;
  /** Use IFF_VNET_HDR + TUNSETOFFLOAD (CSUM, TSO4, TSO6, and USO4/USO6 where the kernel accepts them). Default true. */
  offload?: boolean;
}

/** Offloads the kernel accepted (TUNSETOFFLOAD). */
export interface TunOffloads {
  csum: boolean;
  tso4: boolean;
  tso6: boolean;
  uso: boolean;
}

export const TUN_COUNTERS = [
  'PacketsReceived',
  'BytesReceived',
  'PacketsSent',
  'BytesSent',
  'ReadBatches',
  'WriteBatches',
  'GsoPacketsReceived',
  'GsoSegmentsSplit',
  'ReceiveErrors',
  'SendErrors',
  'SendDropped',
  'MalformedReceived',
] as const;
export type TunCounter = (typeof TUN_COUNTERS)[number];

const TUN_F_CSUM = 0x01;
const TUN_F_TSO4 = 0x02;
const TUN_F_TSO6 = 0x04;
const TUN_F_USO4 = 0x20;
const TUN_F_USO6 = 0x40;

/** Packets per read batch (one native call, one deliverPackets). */
export const READ_BATCH_PACKETS = 64;
/** Read batches per readable event before yielding to the event loop. */
const BATCHES_PER_EVENT = 4;
/** Slab size: packets are read back to back into it; a new slab is taken when it is nearly full. */
const SLAB_SIZE = 1 << 20;
/** Free bytes kept before each received packet, for headers prepended when a packet is reused for a reply. */
const RX_HEADROOM = DEFAULT_HEADROOM;
const EMPTY = Buffer.alloc(0);

/** Largest IP packet a read can return, plus the vnet header. */
const MAX_IP_PACKET = 65535;

/**
 * A TUN device. Created by {@link openTun}. Implements the usernet LinkEndpoint: attach a
 * stack's NIC with `stack.addNic(link)`.
 */
export class TunLink implements LinkEndpoint {
  /** Actual interface name. */
  readonly name: string;
  /** The device's file descriptor (stays the same number after close, but is no longer open). */
  readonly fd: number;
  readonly mtu: number;
  readonly capabilities: LinkCapabilities;
  /** What the kernel accepted (all false with `offload: false`). */
  readonly offloads: TunOffloads;
  readonly stats: Counters<TunCounter> = createCounters(TUN_COUNTERS);
  /** The error that stopped reading (the device went away), or null. */
  readError: UsernetError | null = null;

  private readonly handle: NativeTunHandle;
  private readonly vnet: boolean;
  private readonly receiver: VnetReceiver;
  private dispatcher: LinkDispatcher | null = null;
  private polling = false;
  private closed = false;
  private refed = true;
  // Receive state, reused between batches.
  private slab: Buffer = Buffer.allocUnsafe(SLAB_SIZE);
  private cursor = 0;
  private readonly maxRead: number;
  private readonly meta = new Uint32Array(4 + 2 * READ_BATCH_PACKETS);
  private readonly batch: PacketBuffer[] = [];
  private readonly onReadable: () => void;
  // Send state, reused between batches.
  private bufs: Uint8Array[] = [];
  private starts = new Uint32Array(64);
  private lens = new Uint32Array(64);
  private readonly result = new Uint32Array(4);

  /** @internal Use {@link openTun}. */
  constructor(handle: NativeTunHandle, mtu: number) {
    this.handle = handle;
    this.name = handle.name;
    this.fd = handle.fd;
    this.mtu = mtu;
    this.vnet = handle.vnetHdr;
    const f = handle.offloads;
    this.offloads = {
      csum: (f & TUN_F_CSUM) !== 0,
      tso4: (f & TUN_F_TSO4) !== 0,
      tso6: (f & TUN_F_TSO6) !== 0,
      uso: (f & (TUN_F_USO4 | TUN_F_USO6)) === (TUN_F_USO4 | TUN_F_USO6),
    };
    this.capabilities = {
      checksumOffload: this.offloads.csum,
      gsoMaxSize: this.offloads.tso4 || this.offloads.tso6 ? MAX_IP_PACKET : 0,
    };
    this.maxRead = MAX_IP_PACKET + (this.vnet ? VNET_HDR_LEN : 0);
    this.receiver = new VnetReceiver(this.stats, RX_HEADROOM);
    this.onReadable = () => this.readBatches();
  }

  /** True once {@link close} has run. */
  get isClosed(): boolean {
    return this.closed;
  }

  attach(dispatcher: LinkDispatcher | null): void {
    this.dispatcher = dispatcher;
    if (this.closed) return;
    if (dispatcher !== null && !this.polling && this.readError === null) {
      try {
        this.handle.start(this.onReadable);
      } catch (e) {
        throw fromNativeError(e, 'attach');
      }
      this.polling = true;
    } else if (dispatcher === null && this.polling) {
      this.handle.stop();
      this.polling = false;
    }
  }

  /** The poll handle keeps the event loop alive while attached (the default), like a listening socket. */
  ref(): void {
    this.refed = true;
    if (!this.closed) this.handle.ref();
  }

  /** Lets the process exit while the link is attached. */
  unref(): void {
    this.refed = false;
    if (!this.closed) this.handle.unref();
  }

  /** True unless {@link unref} was called last. */
  get hasRef(): boolean {
    return this.refed;
  }

  writePackets(packets: readonly PacketBuffer[]): number {
    const st = this.stats;
    const total = packets.length;
    if (total === 0) return 0;
    if (this.closed) {
      st.SendDropped += total;
      return 0;
    }
    if (this.starts.length < total) this.grow(total);
    const bufs = this.bufs;
    const starts = this.starts;
    const lens = this.lens;
    let n = 0;
    for (let i = 0; i < total; i++) {
      const p = packets[i]!;
      if (this.vnet) {
        if (!prependVnetHeader(p, this.offloads)) {
          st.SendErrors++;
          continue;
        }
      } else if (p.needsChecksum && !completeChecksum(p)) {
        st.SendErrors++;
        continue;
      }
      bufs[n] = p.data;
      starts[n] = p.start;
      lens[n] = p.end - p.start;
      n++;
    }
    let written = 0;
    if (n > 0) {
      const r = this.result;
      written = this.handle.write(bufs, n, starts, lens, r);
      st.WriteBatches++;
      st.PacketsSent += written;
      st.BytesSent += r[3]! - (this.vnet ? written * VNET_HDR_LEN : 0);
      st.SendDropped += r[0]!;
      st.SendErrors += r[1]!;
      // Do not pin the packets' memory until the next batch.
      for (let i = 0; i < n; i++) bufs[i] = EMPTY;
    }
    return written;
  }

  /** Stops polling and closes the fd. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.polling = false;
    this.dispatcher = null;
    this.handle.close();
    this.batch.length = 0;
    this.slab = EMPTY;
  }

  private grow(n: number): void {
    let cap = this.starts.length;
    while (cap < n) cap *= 2;
    this.starts = new Uint32Array(cap);
    this.lens = new Uint32Array(cap);
    const bufs = new Array<Uint8Array>(cap);
    for (let i = 0; i < cap; i++) bufs[i] = this.bufs[i] ?? EMPTY;
    this.bufs = bufs;
  }

  /** Runs on each readable event: up to a few batches, each one native read call and one deliverPackets. */
  private readBatches(): void {
    const st = this.stats;
    const meta = this.meta;
    const batch = this.batch;
    const maxRead = this.maxRead;
    // Read at align8(end) + gap so each packet has RX_HEADROOM free bytes before its IP header.
    const gap = RX_HEADROOM - (this.vnet ? VNET_HDR_LEN : 0);
    for (let round = 0; round < BATCHES_PER_EVENT; round++) {
      const d = this.dispatcher;
      if (this.closed || d === null) return;
      if (this.slab.length - this.cursor < maxRead + RX_HEADROOM + 8) {
        // Never reuse a slab: delivered packets may still reference it.
        this.slab = Buffer.allocUnsafe(SLAB_SIZE);
        this.cursor = 0;
      }
      const slab = this.slab;
      const n = this.handle.read(slab, this.cursor, gap, maxRead, READ_BATCH_PACKETS, meta);
      const drained = meta[0] === 1;
      const fatal = meta[2]!;
      st.ReceiveErrors += meta[1]!;
      this.cursor = meta[3]!;
      if (n > 0) {
        st.ReadBatches++;
        for (let i = 0; i < n; i++) {
          const off = meta[4 + 2 * i]!;
          const len = meta[5 + 2 * i]!;
          if (this.vnet) {
            this.receiver.receive(slab, off, len, batch);
          } else if (len === 0) {
            st.MalformedReceived++;
          } else {
            batch.push(new PacketBuffer(slab, off, off + len));
          }
        }
        let bytes = 0;
        for (let i = 0; i < batch.length; i++) bytes += batch[i]!.length;
        st.PacketsReceived += batch.length;
        st.BytesReceived += bytes;
        if (batch.length > 0) {
          try {
            d.deliverPackets(batch);
          } finally {
            batch.length = 0;
          }
        }
      }
      if (fatal !== 0) {
        // The device is gone (deleted interface: EBADFD) or the fd broke: stop polling, keep the error.
        st.ReceiveErrors++;
        this.readError = errnoToError(fatal, 'read', this.name);
        if (this.polling && !this.closed) this.handle.stop();
        this.polling = false;
        return;
      }
      // Not drained: a cap was hit (packets or slab room), so go on with a fresh batch.
      if (drained || (n === 0 && meta[1] === 0)) return;
    }
  }
}

const NAME_RE = /^[^/:\s]{1,15}$/;

/**
 * Opens /dev/net/tun (IFF_TUN | IFF_NO_PI [| IFF_VNET_HDR]), non-blocking. Throws a
 * UsernetError: EPERM/EACCES (not root / no CAP_NET_ADMIN), ENOENT (no /dev/net/tun), EBUSY
 * (name in use), EINVAL (bad options, or the name belongs to a device that is not a TUN).
 */
export function openTun(options: TunOptions = {}): TunLink {
  const name = options.name ?? '';
  if (typeof name !== 'string' || (name !== '' && (!NAME_RE.test(name) || name === '.' || name === '..' || Buffer.byteLength(name) > 15))) {
    throw errnoError('EINVAL', 'openTun', `bad interface name ${JSON.stringify(name)}`);
  }
  const mtu = options.mtu ?? 1500;
  if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535) throw errnoError('EINVAL', 'openTun', `mtu must be an integer from 68 to 65535, got ${String(mtu)}`);
  const offload = options.offload ?? true;
  const native = loadNative();
  let handle: NativeTunHandle;
  try {
    handle = new native.TunHandle(name, offload);
  } catch (e) {
    throw fromNativeError(e, 'openTun');
  }
  return new TunLink(handle, mtu);
}
