import type { Counters, LinkCapabilities, LinkDispatcher, LinkEndpoint, PacketBuffer } from '@usernet/stack';
import { createCounters, errnoError } from '@usernet/stack';
import { ChecksumMode } from './checksum.js';
import { wallClockMs } from './wall-clock.js';
import { PcapWriter } from './writer.js';

/** Which packets are captured: written to the link (`tx`), received from it (`rx`), or both. */
export type CaptureDirection = 'tx' | 'rx' | 'both';

export interface CaptureOptions {
  /** File to write (created or truncated). Exactly one of `path` and `sink`. */
  path?: string;
  /** Receives the file in chunks instead; each chunk is a fresh Buffer. */
  sink?: (chunk: Buffer) => void;
  /** Most bytes kept of each packet. Default 262144. */
  snaplen?: number;
  /**
   * Timestamp source in milliseconds since the epoch. Default: the wall clock (performance
   * time origin + now). Pass a function of a ManualClock for reproducible files.
   */
  now?: () => number;
  /** Default `both`. */
  direction?: CaptureDirection;
  /**
   * Write TCP/UDP checksums as they would be on the wire: complete the partial checksum of
   * outbound packets marked `needsChecksum`, and recompute it for inbound packets the link
   * marked `checksumVerified` (an in-process link with offload carries partial sums). Only
   * the copy in the file changes. Default true.
   */
  completeChecksums?: boolean;
}

export const CAPTURE_COUNTERS = ['PacketsCaptured', 'BytesCaptured', 'PacketsTruncated', 'ChecksumsCompleted', 'CaptureErrors'] as const;
export type CaptureCounter = (typeof CAPTURE_COUNTERS)[number];

/**
 * A link that wraps another and records the packets crossing it to a libpcap file
 * (LINKTYPE_RAW), DESIGN.md rules 6 and 10. It is a LinkEndpoint itself, with the MTU and
 * capabilities of the inner link. Packets are copied into the capture buffer as they pass;
 * the packets themselves go on untouched.
 *
 * A failing file write (disk full, say) never breaks the link: it is counted in
 * `CaptureErrors`, kept in {@link error}, and capturing stops.
 */
export class CaptureLink implements LinkEndpoint {
  readonly writer: PcapWriter;
  readonly stats: Counters<CaptureCounter> = createCounters(CAPTURE_COUNTERS);
  /** The first error writing the capture, after which capturing stopped. */
  error: unknown = null;
  private readonly now: () => number;
  private readonly tx: boolean;
  private readonly rx: boolean;
  private readonly complete: boolean;
  private capturing = true;
  private closed = false;
  private dispatcher: LinkDispatcher | null = null;
  private readonly rxDispatcher: LinkDispatcher;

  constructor(
    readonly inner: LinkEndpoint,
    options: CaptureOptions,
  ) {
    const direction = options.direction ?? 'both';
    if (direction !== 'tx' && direction !== 'rx' && direction !== 'both') throw errnoError('EINVAL', 'withCapture', `direction must be 'tx', 'rx' or 'both'`);
    if (options.now !== undefined && typeof options.now !== 'function') throw errnoError('EINVAL', 'withCapture', 'now must be a function');
    this.tx = direction !== 'rx';
    this.rx = direction !== 'tx';
    this.complete = options.completeChecksums ?? true;
    this.now = options.now ?? wallClockMs;
    this.writer = new PcapWriter({ path: options.path, sink: options.sink, snaplen: options.snaplen });
    this.rxDispatcher = { deliverPackets: (packets) => this.onInbound(packets) };
  }

  get mtu(): number {
    return this.inner.mtu;
  }

  get capabilities(): LinkCapabilities {
    return this.inner.capabilities;
  }

  attach(dispatcher: LinkDispatcher | null): void {
    this.dispatcher = dispatcher;
    if (!this.rx) this.inner.attach(dispatcher);
    else this.inner.attach(dispatcher === null ? null : this.rxDispatcher);
  }

  /** Records the packets (before the inner link owns them), then hands them on. */
  writePackets(packets: readonly PacketBuffer[]): number {
    if (this.closed) return 0;
    if (this.tx && this.capturing) this.capture(packets, true);
    return this.inner.writePackets(packets);
  }

  /** Writes buffered records to the file. */
  flush(): void {
    if (!this.capturing) return;
    try {
      this.writer.flush();
    } catch (e) {
      this.fail(e);
    }
  }

  /** Flushes and closes the capture file, then closes the inner link. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.writer.close();
    } catch (e) {
      if (this.capturing) this.fail(e);
    } finally {
      this.capturing = false;
      this.inner.close();
    }
  }

  private onInbound(packets: readonly PacketBuffer[]): void {
    const d = this.dispatcher;
    if (this.closed || d === null) return;
    if (this.capturing) this.capture(packets, false);
    d.deliverPackets(packets);
  }

  private capture(packets: readonly PacketBuffer[], outbound: boolean): void {
    const ts = this.now(); // one timestamp per batch
    const w = this.writer;
    const stats = this.stats;
    try {
      for (let i = 0; i < packets.length; i++) {
        const p = packets[i]!;
        let mode: ChecksumMode = ChecksumMode.None;
        if (this.complete) {
          if (outbound) {
            if (p.needsChecksum) mode = ChecksumMode.Complete;
          } else if (p.checksumVerified) {
            mode = ChecksumMode.Recompute;
          }
        }
        const len = p.end - p.start;
        if (w.write(p.data, p.start, len, ts, mode)) stats.ChecksumsCompleted++;
        stats.PacketsCaptured++;
        if (len > w.snaplen) {
          stats.PacketsTruncated++;
          stats.BytesCaptured += w.snaplen;
        } else {
          stats.BytesCaptured += len;
        }
      }
    } catch (e) {
      this.fail(e);
    }
  }

  private fail(e: unknown): void {
    this.stats.CaptureErrors++;
    if (this.error === null) this.error = e;
    this.capturing = false;
  }
}

/** Wraps `inner` in a {@link CaptureLink} writing to `options.path` or `options.sink`. */
export function withCapture(inner: LinkEndpoint, options: CaptureOptions): CaptureLink {
  return new CaptureLink(inner, options);
}
