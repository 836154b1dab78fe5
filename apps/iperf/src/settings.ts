/** The test parameters both ends agree on (the params JSON of iperf3's PARAM_EXCHANGE). */
import { DEFAULT_DURATION, DEFAULT_TCP_BLKSIZE, DEFAULT_UDP_BLKSIZE, DEFAULT_UDP_RATE, MAX_STREAMS } from './args.js';
import type { IperfOptions } from './args.js';

export const VERSION = '3.12';
export const PACING_TIMER_US = 1000;

export interface Settings {
  udp: boolean;
  /** Seconds (0 when ended by bytes or blocks). */
  duration: number;
  bytes: number;
  blocks: number;
  len: number;
  parallel: number;
  reverse: boolean;
  bidir: boolean;
  /** Bits per second per stream, 0 unlimited. */
  bandwidth: number;
  burst: number;
  omit: number;
  congestion: string | undefined;
  window: number | undefined;
  mss: number | undefined;
  nodelay: boolean;
  udpCounters64: boolean;
  repeatingPayload: boolean;
  getServerOutput: boolean;
  title: string | undefined;
  pacingTimer: number;
}

/** Client side: the settings from the command line; `udpLen` is the UDP default block size (from the MSS). */
export function settingsFromOptions(o: IperfOptions, udpLen: number): Settings {
  return {
    udp: o.udp,
    duration: o.duration,
    bytes: o.bytes,
    blocks: o.blocks,
    len: o.len !== 0 ? o.len : o.udp ? udpLen : DEFAULT_TCP_BLKSIZE,
    parallel: o.parallel,
    reverse: o.reverse,
    bidir: o.bidir,
    bandwidth: o.bandwidth ?? (o.udp ? DEFAULT_UDP_RATE : 0),
    burst: o.burst,
    omit: o.omit,
    congestion: o.congestion,
    window: o.window,
    mss: o.mss,
    nodelay: o.nodelay,
    udpCounters64: o.udpCounters64,
    repeatingPayload: o.repeatingPayload,
    getServerOutput: o.getServerOutput,
    title: o.title,
    pacingTimer: PACING_TIMER_US,
  };
}

/** The params JSON, in iperf3 3.12's key order. */
export function paramsJson(s: Settings): Record<string, unknown> {
  const j: Record<string, unknown> = {};
  if (s.udp) j.udp = true;
  else j.tcp = true;
  j.omit = s.omit;
  j.time = s.duration;
  j.num = s.bytes;
  j.blockcount = s.blocks;
  if (s.mss !== undefined) j.MSS = s.mss;
  if (s.nodelay) j.nodelay = true;
  j.parallel = s.parallel;
  if (s.reverse) j.reverse = true;
  if (s.bidir) j.bidirectional = true;
  if (s.window !== undefined) j.window = s.window;
  j.len = s.len;
  if (s.bandwidth !== 0) j.bandwidth = s.bandwidth;
  j.pacing_timer = s.pacingTimer;
  if (s.burst !== 0) j.burst = s.burst;
  if (s.title !== undefined) j.title = s.title;
  if (s.congestion !== undefined) j.congestion = s.congestion;
  if (s.getServerOutput) j.get_server_output = 1;
  if (s.udpCounters64) j.udp_counters_64bit = 1;
  if (s.repeatingPayload) j.repeating_payload = 1;
  j.client_version = VERSION;
  return j;
}

function num(v: unknown, fallback: number): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : fallback;
}

function flag(v: unknown): boolean {
  return v === true || (typeof v === 'number' && v !== 0);
}

export class ParamsError extends Error {}

/** Server side: the settings from the client's params JSON. Throws ParamsError for impossible values. */
export function settingsFromParams(j: Record<string, unknown>): Settings {
  const udp = flag(j.udp);
  const parallel = Math.floor(num(j.parallel, 1));
  if (parallel < 1 || parallel > MAX_STREAMS) throw new ParamsError(`parallel ${parallel}`);
  const len = Math.floor(num(j.len, udp ? DEFAULT_UDP_BLKSIZE : DEFAULT_TCP_BLKSIZE)) || (udp ? DEFAULT_UDP_BLKSIZE : DEFAULT_TCP_BLKSIZE);
  if (len < (udp ? 16 : 1) || len > 1024 * 1024) throw new ParamsError(`len ${len}`);
  return {
    udp,
    duration: num(j.time, DEFAULT_DURATION),
    bytes: num(j.num, 0),
    blocks: num(j.blockcount, 0),
    len,
    parallel,
    reverse: flag(j.reverse),
    bidir: flag(j.bidirectional),
    bandwidth: num(j.bandwidth, udp ? DEFAULT_UDP_RATE : 0),
    burst: num(j.burst, 0),
    omit: num(j.omit, 0),
    congestion: typeof j.congestion === 'string' ? j.congestion : undefined,
    window: typeof j.window === 'number' ? j.window : undefined,
    mss: typeof j.MSS === 'number' ? j.MSS : undefined,
    nodelay: flag(j.nodelay),
    udpCounters64: flag(j.udp_counters_64bit),
    repeatingPayload: flag(j.repeating_payload),
    getServerOutput: flag(j.get_server_output),
    title: typeof j.title === 'string' ? j.title : undefined,
    pacingTimer: num(j.pacing_timer, PACING_TIMER_US),
  };
}
