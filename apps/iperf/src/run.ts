/**
 * The data phase of a test, shared by client and server: sending (paced or not), receiving,
 * UDP sequence/jitter accounting, interval timers, the omit period, and the end-of-test
 * bookkeeping. Time here is the host's (performance.now, Node timers): this is an app.
 */
import { performance } from 'node:perf_hooks';
import type { Settings } from './settings.js';
import type { Stream, StreamInterval } from './stream.js';
import { readTcpInfo } from './stream.js';

/** 0x36373839 / 0x39383736 in x86 host byte order, as iperf3 writes them. */
export const UDP_CONNECT_MSG = Uint8Array.of(0x39, 0x38, 0x37, 0x36);
export const UDP_CONNECT_REPLY = Uint8Array.of(0x36, 0x37, 0x38, 0x39);
/** The legacy reply 987654321 in host byte order. */
export const UDP_CONNECT_REPLY_LEGACY = Uint8Array.of(0xb1, 0x68, 0xde, 0x3a);

/** Most TCP blocks written in one go before yielding to the event loop. */
const MAX_BLOCKS_PER_PUMP = 64;
/** Most UDP datagrams sent per pacing tick (per stream). */
const MAX_DATAGRAMS_PER_TICK = 2048;

export interface RunHooks {
  /** An interval finished (also the partial last one). */
  onInterval(records: (StreamInterval | null)[], run: TestRun): void;
  /** The client-side end condition (-n/-k) was met. */
  onLimitReached(): void;
  /** The omit period ended (counters restart). */
  onOmitEnd?(): void;
}

function nowSec(): number {
  return performance.now() / 1000;
}

export class TestRun {
  readonly streams: Stream[] = [];
  /** Test start (reset at the end of the omit period), seconds on the host clock. */
  t0 = 0;
  ivStart = 0;
  running = false;
  stopped = false;
  omitting = false;
  totalSent = 0;
  totalReceived = 0;
  blocksSent = 0;
  private ivTimer: NodeJS.Timeout | null = null;
  private omitTimer: NodeJS.Timeout | null = null;
  private paceTimer: NodeJS.Timeout | null = null;
  private paceImmediate: NodeJS.Immediate | null = null;
  private limitFired = false;
  private cpuStart = process.cpuUsage();
  private wallStart = nowSec();
  cpu = { total: 0, user: 0, system: 0 };

  constructor(
    readonly settings: Settings,
    readonly role: 'client' | 'server',
    readonly interval: number,
    private readonly hooks: RunHooks,
  ) {}

  /** Seconds since the (post-omit) test start. */
  elapsed(): number {
    return nowSec() - this.t0;
  }

  add(s: Stream): void {
    this.streams.push(s);
  }

  /** Wires receive callbacks (before TEST_START, so nothing is missed). */
  attachReceivers(): void {
    for (const s of this.streams) {
      if (s.sender) {
        if (s.tcp !== null) {
          const sock = s.tcp;
          // A sender still reads (and discards) so that close() is a FIN, not a reset.
          sock.onReadable = () => {
            while (sock.read() !== null);
          };
          sock.onEnd = () => {
            s.eof = true;
          };
          sock.onClose = () => {
            s.eof = true;
            s.sending = false;
          };
        } else if (s.udp !== null) {
          const u = s.udp;
          u.onReadable = () => {
            while (u.receive() !== null);
          };
          u.onError = () => {};
        }
        continue;
      }
      if (s.tcp !== null) {
        const sock = s.tcp;
        sock.onReadable = () => this.drainTcp(s);
        sock.onEnd = () => {
          this.drainTcp(s);
          s.eof = true;
          this.eofWaiter?.();
        };
        sock.onClose = () => {
          s.eof = true;
          this.eofWaiter?.();
        };
      } else if (s.udp !== null) {
        const u = s.udp;
        u.onReadable = () => this.drainUdp(s);
        u.onError = () => {};
      }
    }
  }

  private eofWaiter: (() => void) | null = null;

  drainTcp(s: Stream): void {
    const sock = s.tcp;
    if (sock === null) return;
    let got = 0;
    for (let d = sock.read(); d !== null; d = sock.read()) got += d.length;
    if (got === 0) return;
    s.bytes += got;
    s.ivBytes += got;
    this.totalReceived += got;
    this.checkLimits();
  }

  drainUdp(s: Stream): void {
    const u = s.udp;
    if (u === null) return;
    const hdr = this.settings.udpCounters64 ? 16 : 12;
    for (let d = u.receive(); d !== null; d = u.receive()) {
      const data = d.data;
      if (data.length < hdr) continue; // a stray connect message or garbage
      const t = process.hrtime();
      const arrival = t[0] + t[1] / 1e9;
      const dv = new DataView(data.buffer, data.byteOffset, data.length);
      const sent = dv.getUint32(0) + dv.getUint32(4) / 1e6;
      const pcount = hdr === 16 ? Number(dv.getBigUint64(8)) : dv.getUint32(8);
      s.bytes += data.length;
      s.ivBytes += data.length;
      this.totalReceived += data.length;
      // iperf3: a gap counts as lost, a step backwards as out of order (and one fewer lost).
      if (pcount >= s.packets + 1) {
        if (pcount > s.packets + 1) s.errors += pcount - 1 - s.packets;
        s.packets = pcount;
      } else {
        s.outOfOrder++;
        if (s.errors > 0) s.errors--;
      }
      // RFC 1889 (RTP) interarrival jitter: J += (|D| - J) / 16.
      const transit = arrival - sent;
      if (!Number.isNaN(s.prevTransit)) {
        const dd = Math.abs(transit - s.prevTransit);
        s.jitter += (dd - s.jitter) / 16;
      }
      s.prevTransit = transit;
    }
    this.checkLimits();
  }

  /** TEST_RUNNING: start the clocks and the senders. */
  start(): void {
    this.running = true;
    this.t0 = nowSec();
    this.ivStart = 0;
    this.cpuStart = process.cpuUsage();
    this.wallStart = nowSec();
    // Not reset(): bytes that arrived before TEST_RUNNING was processed still count.
    for (const s of this.streams) s.captureBase();
    this.omitting = this.settings.omit > 0;
    if (this.omitting) {
      this.omitTimer = setTimeout(() => this.endOmit(), this.settings.omit * 1000);
    }
    this.armInterval();
    for (const s of this.streams) {
      if (!s.sender) continue;
      s.sending = true;
      if (s.tcp !== null) {
        const sock = s.tcp;
        const pump = (): void => this.pumpTcp(s);
        sock.onWritable = pump;
      }
    }
    this.startSenders();
  }

  private startSenders(): void {
    const udp = this.settings.udp;
    const paced = this.settings.bandwidth > 0;
    if (!udp && !paced) {
      for (const s of this.streams) if (s.sender && s.tcp !== null) this.pumpTcp(s);
      return;
    }
    if (!this.streams.some((s) => s.sender)) return;
    const tick = (): void => {
      this.paceTimer = null;
      this.paceImmediate = null;
      if (this.stopped) return;
      for (const s of this.streams) {
        if (!s.sending) continue;
        if (s.udp !== null) this.pumpUdp(s);
        else if (s.tcp !== null) this.pumpTcp(s);
      }
      if (paced) this.paceTimer = setTimeout(tick, Math.max(1, this.settings.pacingTimer / 1000));
      else this.paceImmediate = setImmediate(tick);
    };
    tick();
  }

  /** iperf3's throttle: a stream may send while its average rate is below the target. */
  private green(s: Stream): boolean {
    const rate = this.settings.bandwidth;
    if (rate <= 0) return true;
    const secs = this.elapsed();
    if (secs <= 0) return true;
    return (s.bytes * 8) / secs < rate;
  }

  pumpTcp(s: Stream): void {
    const sock = s.tcp;
    if (sock === null) return;
    let blocks = 0;
    while (s.sending) {
      if (!this.green(s)) return; // the pacing timer comes back
      const block = s.block;
      const chunk = s.blockOffset === 0 ? block : block.subarray(s.blockOffset);
      let n: number;
      try {
        n = sock.write(chunk);
      } catch {
        s.sending = false;
        return;
      }
      if (n > 0) {
        s.bytes += n;
        s.ivBytes += n;
        this.totalSent += n;
        s.blockOffset += n;
        if (s.blockOffset >= block.length) {
          s.blockOffset = 0;
          s.blocks++;
          this.blocksSent++;
        }
        this.checkLimits();
      }
      if (n < chunk.length) return; // onWritable comes back
      if (++blocks >= MAX_BLOCKS_PER_PUMP) {
        setImmediate(() => this.pumpTcp(s));
        return;
      }
    }
  }

  private pumpUdp(s: Stream): void {
    const u = s.udp;
    if (u === null) return;
    const burst = this.settings.burst > 0 ? this.settings.burst : MAX_DATAGRAMS_PER_TICK;
    const dv = new DataView(s.block.buffer, s.block.byteOffset, s.block.length);
    const wide = this.settings.udpCounters64;
    for (let i = 0; i < burst && s.sending; i++) {
      if (!this.green(s)) return;
      const t = process.hrtime();
      dv.setUint32(0, t[0] >>> 0);
      dv.setUint32(4, Math.floor(t[1] / 1000));
      const count = s.packets + 1;
      if (wide) dv.setBigUint64(8, BigInt(count));
      else dv.setUint32(8, count >>> 0);
      try {
        u.send(s.block);
      } catch {
        return; // ENOBUFS and the like: try again next tick
      }
      s.packets = count;
      s.bytes += s.block.length;
      s.ivBytes += s.block.length;
      s.blocks++;
      this.totalSent += s.block.length;
      this.blocksSent++;
      this.checkLimits();
    }
  }

  /** -n / -k (client only): all directions reached the limit. */
  private checkLimits(): void {
    if (this.role !== 'client' || this.limitFired || this.omitting) return;
    const st = this.settings;
    if (st.bytes <= 0 && st.blocks <= 0) return;
    const hasSend = this.streams.some((s) => s.sender);
    const hasRecv = this.streams.some((s) => !s.sender);
    const need = st.bytes > 0 ? st.bytes : st.blocks * st.len;
    const sentDone = !hasSend || (st.bytes > 0 ? this.totalSent >= st.bytes : this.blocksSent >= st.blocks);
    const recvDone = !hasRecv || this.totalReceived >= need;
    if (sentDone && recvDone) {
      this.limitFired = true;
      this.hooks.onLimitReached();
    } else if (sentDone) {
      for (const s of this.streams) if (s.sender) s.sending = false;
    }
  }

  private armInterval(): void {
    if (this.ivTimer !== null) clearTimeout(this.ivTimer);
    this.ivTimer = null;
    if (this.interval <= 0) return;
    const due = this.ivStart + this.interval;
    const delay = Math.max(0, (due - this.elapsed()) * 1000);
    this.ivTimer = setTimeout(() => {
      this.ivTimer = null;
      if (this.stopped) return;
      this.closeInterval(due);
      this.armInterval();
    }, delay);
  }

  /** Ends the current interval at `end` (seconds since t0) and reports it. */
  private closeInterval(end: number): void {
    const records: (StreamInterval | null)[] = [];
    for (const s of this.streams) records.push(this.streamInterval(s, this.ivStart, end));
    this.ivStart = end;
    this.hooks.onInterval(records, this);
  }

  private streamInterval(s: Stream, start: number, end: number): StreamInterval {
    const r: StreamInterval = { start, end, bytes: s.ivBytes, omitted: this.omitting };
    s.ivBytes = 0;
    if (this.settings.udp) {
      if (s.sender) {
        r.packets = s.packets - s.ivPackets;
      } else {
        r.packets = s.packets - s.ivPackets;
        r.lost = s.errors - s.ivErrors;
        r.jitter = s.jitter;
      }
      s.ivPackets = s.packets;
      s.ivErrors = s.errors;
    } else if (s.sender && s.hasInfo && s.tcp !== null) {
      const info = readTcpInfo(s.tcp);
      if (info !== null) {
        r.retransmits = info.totalRetrans - s.ivRetrans;
        s.ivRetrans = info.totalRetrans;
        r.cwnd = info.cwnd;
        r.sndWnd = info.sndWnd;
        r.rtt = Math.round(info.srtt * 1000);
        r.rttvar = Math.round(info.rttvar * 1000);
        r.pmtu = info.mss + (s.remoteAddress.includes(':') ? 60 : 40);
        s.maxCwnd = Math.max(s.maxCwnd, r.cwnd);
        s.maxSndWnd = Math.max(s.maxSndWnd, r.sndWnd);
        if (r.rtt > 0) {
          s.minRtt = Math.min(s.minRtt, r.rtt);
          s.maxRtt = Math.max(s.maxRtt, r.rtt);
          s.rttSum += r.rtt;
          s.rttCount++;
        }
      }
    }
    s.intervals.push(r);
    return r;
  }

  private endOmit(): void {
    this.omitTimer = null;
    if (this.stopped) return;
    // The rest of the omitted period is an (omitted) interval of its own when it is long enough.
    const now = this.elapsed();
    if (this.interval > 0 && now - this.ivStart >= this.interval * 0.1) this.closeInterval(now);
    this.omitting = false;
    this.t0 = nowSec();
    this.ivStart = 0;
    for (const s of this.streams) s.reset();
    this.totalSent = 0;
    this.totalReceived = 0;
    this.blocksSent = 0;
    this.cpuStart = process.cpuUsage();
    this.wallStart = nowSec();
    this.armInterval();
    this.hooks.onOmitEnd?.();
  }

  /** No more sending (the end of the test); the clocks keep running until stop(). */
  stopSenders(): void {
    for (const s of this.streams) s.sending = false;
  }

  /** Stops the senders and the clocks; reports the last partial interval. Idempotent. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    for (const s of this.streams) s.sending = false;
    if (this.ivTimer !== null) clearTimeout(this.ivTimer);
    if (this.omitTimer !== null) clearTimeout(this.omitTimer);
    if (this.paceTimer !== null) clearTimeout(this.paceTimer);
    if (this.paceImmediate !== null) clearImmediate(this.paceImmediate);
    this.ivTimer = this.omitTimer = this.paceTimer = null;
    this.paceImmediate = null;
    if (!this.running) return;
    const now = this.elapsed();
    for (const s of this.streams) s.endTime = now;
    const len = now - this.ivStart;
    const anyBytes = this.streams.some((s) => s.ivBytes > 0);
    if (this.interval > 0 && len > 0 && (len >= this.interval * 0.1 || (this.role === 'server' && anyBytes))) {
      // A tick that is (nearly) due is reported as a whole interval.
      this.closeInterval(len >= this.interval * 0.9 ? Math.max(now, this.ivStart + this.interval * 0.9) : now);
    }
    const cpu = process.cpuUsage(this.cpuStart);
    const wall = Math.max(1e-6, nowSec() - this.wallStart);
    this.cpu = {
      user: (cpu.user / 1e6 / wall) * 100,
      system: (cpu.system / 1e6 / wall) * 100,
      total: ((cpu.user + cpu.system) / 1e6 / wall) * 100,
    };
  }

  /** Resolves once every sending TCP stream's queue is empty (acknowledged), or after `ms`. */
  async senderDrain(ms: number): Promise<void> {
    const deadline = performance.now() + ms;
    for (;;) {
      const pending = this.streams.some((s) => s.sender && s.tcp !== null && s.tcp.readyState !== 'closed' && s.tcp.writableLength > 0);
      if (!pending || performance.now() >= deadline) return;
      await new Promise((r) => setTimeout(r, 2));
    }
  }

  /** Resolves once every receiving TCP stream saw the peer's FIN, or after `ms`. */
  async receiverEof(ms: number): Promise<void> {
    const done = (): boolean => this.streams.every((s) => s.sender || s.tcp === null || s.eof);
    if (done()) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.eofWaiter = null;
        resolve();
      }, ms);
      this.eofWaiter = () => {
        if (!done()) return;
        clearTimeout(t);
        this.eofWaiter = null;
        resolve();
      };
    });
  }

  /** Reads whatever the receivers still hold. */
  drainAll(): void {
    for (const s of this.streams) {
      if (s.sender) continue;
      if (s.tcp !== null) this.drainTcp(s);
      else if (s.udp !== null) this.drainUdp(s);
    }
  }

  close(): void {
    this.stop();
    for (const s of this.streams) s.close();
  }
}
