/**
 * iperf3 3.12's output: the text lines (iperf_locale.c formats) and the -J document
 * (start / intervals / end), for one test seen from one end.
 */
import os from 'node:os';
import { cjson, fixed, g2, idField, intervalField, unitString } from './format.js';
import type { TestRun } from './run.js';
import type { Settings } from './settings.js';
import type { Stream, StreamInterval } from './stream.js';

export const SEPARATOR = '- - - - - - - - - - - - - - - - - - - - - - - - -';

/** Where lines go: text to the sink, or kept for the JSON document. */
export class Output {
  /** Text written during the current test (for --get-server-output). */
  captured: string[] = [];
  capturing = false;

  constructor(
    private readonly sink: (s: string) => void,
    readonly json: boolean,
    private readonly title: string | undefined = undefined,
  ) {}

  /** A text line (ignored in JSON mode). */
  line(s = ''): void {
    if (this.json) return;
    const text = `${this.title !== undefined ? `${this.title}:  ` : ''}${s}\n`;
    if (this.capturing) this.captured.push(text);
    this.sink(text);
  }

  /** Raw text, printed in either mode (the JSON document itself). */
  raw(s: string): void {
    this.sink(s);
  }
}

export function systemInfo(): string {
  return `${os.type()} ${os.hostname()} ${os.release()} ${os.version()} ${os.machine()}`;
}

export function timestamp(): { time: string; timesecs: number } {
  const now = Date.now();
  return { time: new Date(now).toUTCString(), timesecs: Math.floor(now / 1000) };
}

/** Shows v4-mapped IPv6 addresses as IPv4, like iperf3. */
export function displayAddress(a: string): string {
  return a.startsWith('::ffff:') && a.includes('.') ? a.slice(7) : a;
}

interface Side {
  bytes: number;
  end: number;
  retransmits: number | undefined;
  packets: number;
  errors: number;
  jitter: number;
  outOfOrder: number;
}

/** The peer's top-level results. */
export interface PeerResults {
  cpuTotal: number;
  cpuUser: number;
  cpuSystem: number;
  senderHasRetransmits: boolean;
  congestionUsed: string | undefined;
  serverOutputJson: unknown;
  serverOutputText: string | undefined;
}

function rate(bytes: number, seconds: number): number {
  return seconds > 0 ? (bytes * 8) / seconds : 0;
}

function lostPercent(lost: number, packets: number): number {
  return packets > 0 ? (100 * lost) / packets : 0;
}

export class Report {
  readonly start: Record<string, unknown> = {};
  readonly intervals: unknown[] = [];
  private connected: unknown[] = [];
  private ivCount = 0;
  /** The local congestion control of the data streams (TCP_CONGESTION), when known. */
  congestion: string | undefined;
  error: string | undefined;

  constructor(
    private readonly out: Output,
    readonly role: 'client' | 'server',
    private readonly format: string,
    private readonly verbose: boolean,
  ) {
    this.start.connected = this.connected;
    this.start.version = 'iperf 3.12';
    this.start.system_info = systemInfo();
  }

  private roleTag(s: Stream, settings: Settings): string {
    if (!settings.bidir) return '';
    return `[${s.sender ? 'TX' : 'RX'}-${this.role === 'client' ? 'C' : 'S'}]`;
  }

  connectedLine(s: Stream): void {
    this.connected.push({
      socket: s.fd,
      local_host: displayAddress(s.localAddress),
      local_port: s.localPort,
      remote_host: displayAddress(s.remoteAddress),
      remote_port: s.remotePort,
    });
    this.out.line(`${idField(s.fd)} local ${displayAddress(s.localAddress)} port ${s.localPort} connected to ${displayAddress(s.remoteAddress)} port ${s.remotePort}`);
  }

  /** The forward streams (sum / sum_sent) and, with --bidir, the reverse ones. */
  private groups(run: TestRun): [Stream[], Stream[]] {
    if (!run.settings.bidir) return [run.streams, []];
    const fwdSender = this.role === 'client';
    return [run.streams.filter((s) => s.sender === fwdSender), run.streams.filter((s) => s.sender !== fwdSender)];
  }

  private intervalHeader(run: TestRun): string {
    const st = run.settings;
    const id = st.bidir ? '[ ID][Role]' : '[ ID]';
    if (st.udp) {
      const allSend = run.streams.every((s) => s.sender);
      return allSend ? `${id} Interval           Transfer     Bitrate         Total Datagrams` : `${id} Interval           Transfer     Bitrate         Jitter    Lost/Total Datagrams`;
    }
    const info = run.streams.some((s) => s.sender && s.hasInfo);
    return info ? `${id} Interval           Transfer     Bitrate         Retr  Cwnd` : `${id} Interval           Transfer     Bitrate`;
  }

  interval(records: (StreamInterval | null)[], run: TestRun): void {
    const st = run.settings;
    if (this.ivCount === 0) this.out.line(this.intervalHeader(run));
    else if (st.parallel > 1) this.out.line(SEPARATOR);
    this.ivCount++;
    const streamsJson: unknown[] = [];
    run.streams.forEach((s, i) => {
      const r = records[i];
      if (r === null || r === undefined) return;
      streamsJson.push(this.intervalStreamJson(s, r, st));
      this.out.line(this.intervalStreamLine(s, r, st));
    });
    const entry: Record<string, unknown> = { streams: streamsJson };
    const [fwd, rev] = this.groups(run);
    const fwdSum = this.intervalSum(fwd, records, run);
    if (fwdSum !== null) entry.sum = fwdSum;
    if (st.bidir) {
      const revSum = this.intervalSum(rev, records, run);
      if (revSum !== null) entry.sum_bidir_reverse = revSum;
    }
    this.intervals.push(entry);
  }

  private intervalStreamLine(s: Stream, r: StreamInterval, st: Settings): string {
    const secs = r.end - r.start;
    const head = `${idField(s.fd)}${this.roleTag(s, st)}${intervalField(r.start, r.end)}  ${unitString(r.bytes, 'A')}s  ${unitString(secs > 0 ? r.bytes / secs : 0, this.format)}s/sec`;
    const omit = r.omitted ? '(omitted)' : '';
    if (st.udp) {
      if (s.sender) return `${head} ${st.bidir ? '          ' : ''} ${r.packets ?? 0}  ${omit}`;
      const lost = r.lost ?? 0;
      const pk = r.packets ?? 0;
      return `${head}  ${fixed((r.jitter ?? 0) * 1000, 5, 3)} ms  ${lost}/${pk} (${g2(lostPercent(lost, pk))}%)  ${omit}`;
    }
    if (r.retransmits !== undefined) {
      return `${head}  ${String(r.retransmits).padStart(3)}   ${unitString(r.cwnd ?? 0, 'A')}s       ${omit}`;
    }
    return `${head}                  ${omit}`;
  }

  private intervalStreamJson(s: Stream, r: StreamInterval, st: Settings): Record<string, unknown> {
    const secs = r.end - r.start;
    const j: Record<string, unknown> = { socket: s.fd, start: r.start, end: r.end, seconds: secs, bytes: r.bytes, bits_per_second: rate(r.bytes, secs) };
    if (st.udp) {
      if (s.sender) j.packets = r.packets ?? 0;
      else {
        j.jitter_ms = (r.jitter ?? 0) * 1000;
        j.lost_packets = r.lost ?? 0;
        j.packets = r.packets ?? 0;
        j.lost_percent = lostPercent(r.lost ?? 0, r.packets ?? 0);
      }
    } else if (r.retransmits !== undefined) {
      j.retransmits = r.retransmits;
      j.snd_cwnd = r.cwnd ?? 0;
      j.snd_wnd = r.sndWnd ?? 0;
      j.rtt = r.rtt ?? 0;
      j.rttvar = r.rttvar ?? 0;
      j.pmtu = r.pmtu ?? 0;
    }
    j.omitted = r.omitted;
    j.sender = s.sender;
    return j;
  }

  private intervalSum(group: Stream[], records: (StreamInterval | null)[], run: TestRun): Record<string, unknown> | null {
    const st = run.settings;
    const rs: StreamInterval[] = [];
    for (const s of group) {
      const r = records[run.streams.indexOf(s)];
      if (r !== null && r !== undefined) rs.push(r);
    }
    const first = rs[0];
    const s0 = group[0];
    if (first === undefined || s0 === undefined) return null;
    const secs = first.end - first.start;
    const bytes = rs.reduce((a, r) => a + r.bytes, 0);
    const packets = rs.reduce((a, r) => a + (r.packets ?? 0), 0);
    const lost = rs.reduce((a, r) => a + (r.lost ?? 0), 0);
    const jitter = rs.reduce((a, r) => a + (r.jitter ?? 0), 0) / rs.length;
    const retr = rs.some((r) => r.retransmits !== undefined) ? rs.reduce((a, r) => a + (r.retransmits ?? 0), 0) : undefined;
    const j: Record<string, unknown> = { start: first.start, end: first.end, seconds: secs, bytes, bits_per_second: rate(bytes, secs) };
    if (st.udp) {
      if (s0.sender) j.packets = packets;
      else {
        j.jitter_ms = jitter * 1000;
        j.lost_packets = lost;
        j.packets = packets;
        j.lost_percent = lostPercent(lost, packets);
      }
    } else if (retr !== undefined) j.retransmits = retr;
    j.omitted = first.omitted;
    j.sender = s0.sender;
    if (st.parallel > 1) {
      const head = `[SUM]${this.roleTag(s0, st)}${intervalField(first.start, first.end)}  ${unitString(bytes, 'A')}s  ${unitString(secs > 0 ? bytes / secs : 0, this.format)}s/sec`;
      const omit = first.omitted ? '(omitted)' : '';
      if (st.udp) {
        if (s0.sender) this.out.line(`${head} ${st.bidir ? '          ' : ''} ${packets}  ${omit}`);
        else this.out.line(`${head}  ${fixed(jitter * 1000, 5, 3)} ms  ${lost}/${packets} (${g2(lostPercent(lost, packets))}%)  ${omit}`);
      } else if (retr !== undefined) this.out.line(`${head}  ${String(retr).padStart(3)}             ${omit}`);
      else this.out.line(`${head}                  ${omit}`);
    }
    return j;
  }

  private senderSide(s: Stream, peer: PeerResults | null): Side {
    if (s.sender) {
      return { bytes: s.bytes, end: s.endTime, retransmits: s.hasInfo && s.tcp !== null ? s.totalRetransmits() : undefined, packets: s.udpPackets, errors: 0, jitter: 0, outOfOrder: 0 };
    }
    const p = s.peer;
    if (this.role === 'client' && p !== null && peer !== null) {
      const retr = peer.senderHasRetransmits && p.retransmits >= 0 && p.retransmits < 2 ** 53 ? p.retransmits : undefined;
      return { bytes: p.bytes, end: p.endTime, retransmits: retr, packets: p.packets, errors: 0, jitter: 0, outOfOrder: 0 };
    }
    return { bytes: 0, end: s.endTime, retransmits: undefined, packets: 0, errors: 0, jitter: 0, outOfOrder: 0 };
  }

  private receiverSide(s: Stream, peer: PeerResults | null): Side {
    if (!s.sender) {
      return { bytes: s.bytes, end: s.endTime, retransmits: undefined, packets: s.udpPackets, errors: s.udpErrors, jitter: s.jitter, outOfOrder: s.udpOutOfOrder };
    }
    const p = s.peer;
    if (this.role === 'client' && p !== null && peer !== null) {
      return { bytes: p.bytes, end: p.endTime, retransmits: undefined, packets: p.packets, errors: p.errors, jitter: p.jitter, outOfOrder: 0 };
    }
    return { bytes: 0, end: s.endTime, retransmits: undefined, packets: 0, errors: 0, jitter: 0, outOfOrder: 0 };
  }

  /** The end of the test: summary lines (text) and the `end` object (JSON). */
  end(run: TestRun, peer: PeerResults | null): Record<string, unknown> {
    const st = run.settings;
    const client = this.role === 'client';
    const end: Record<string, unknown> = {};
    const streamsJson: unknown[] = [];
    this.out.line(SEPARATOR);
    if (this.verbose) this.out.line('Test Complete. Summary Results:');
    const id = st.bidir ? '[ ID][Role]' : '[ ID]';
    if (st.udp) this.out.line(`${id} Interval           Transfer     Bitrate         Jitter    Lost/Total Datagrams`);
    else {
      const retrShown = run.streams.some((s) => (client || s.sender) && this.senderSide(s, peer).retransmits !== undefined);
      this.out.line(retrShown ? `${id} Interval           Transfer     Bitrate         Retr` : `${id} Interval           Transfer     Bitrate`);
    }
    for (const s of run.streams) {
      const snd = this.senderSide(s, peer);
      const rcv = this.receiverSide(s, peer);
      const tag = `${idField(s.fd)}${this.roleTag(s, st)}`;
      if (st.udp) {
        if (client || s.sender) this.out.line(this.udpLine(tag, 0, snd.end, snd.bytes, 0, 0, snd.packets, 'sender'));
        if (client || !s.sender) {
          this.out.line(this.udpLine(tag, 0, rcv.end, rcv.bytes, rcv.jitter, rcv.errors, rcv.packets, 'receiver'));
          if (rcv.outOfOrder > 0) this.out.line(`${tag} ${fixed(0, 4, 1)}-${fixed(rcv.end, 4, 1)} sec  ${rcv.outOfOrder} datagrams received out-of-order`);
        }
        const secs = s.endTime;
        streamsJson.push({
          udp: {
            socket: s.fd,
            start: 0,
            end: s.endTime,
            seconds: secs,
            bytes: snd.bytes,
            bits_per_second: rate(snd.bytes, secs),
            jitter_ms: rcv.jitter * 1000,
            lost_packets: rcv.errors,
            packets: rcv.packets,
            lost_percent: lostPercent(rcv.errors, rcv.packets),
            out_of_order: rcv.outOfOrder,
            sender: s.sender,
          },
        });
      } else {
        if (client || s.sender) this.out.line(this.tcpLine(tag, snd.end, snd.bytes, snd.retransmits, 'sender'));
        if (client || !s.sender) this.out.line(this.tcpLine(tag, rcv.end, rcv.bytes, undefined, 'receiver'));
        const sj: Record<string, unknown> = { socket: s.fd, start: 0, end: snd.end, seconds: snd.end, bytes: snd.bytes, bits_per_second: rate(snd.bytes, snd.end) };
        if (snd.retransmits !== undefined) {
          const local = s.sender;
          sj.retransmits = snd.retransmits;
          sj.max_snd_cwnd = local ? s.maxCwnd : 0;
          sj.max_snd_wnd = local ? s.maxSndWnd : 0;
          sj.max_rtt = local ? s.maxRtt : 0;
          sj.min_rtt = local && s.minRtt !== Infinity ? s.minRtt : 0;
          sj.mean_rtt = local && s.rttCount > 0 ? Math.round(s.rttSum / s.rttCount) : 0;
        }
        sj.sender = s.sender;
        streamsJson.push({
          sender: sj,
          receiver: { socket: s.fd, start: 0, end: rcv.end, seconds: rcv.end, bytes: rcv.bytes, bits_per_second: rate(rcv.bytes, rcv.end), sender: s.sender },
        });
      }
    }
    end.streams = streamsJson;
    const [fwd, rev] = this.groups(run);
    this.endSums(end, fwd, '', run, peer);
    if (st.bidir) this.endSums(end, rev, '_bidir_reverse', run, peer);
    end.cpu_utilization_percent = {
      host_total: run.cpu.total,
      host_user: run.cpu.user,
      host_system: run.cpu.system,
      remote_total: client && peer !== null ? peer.cpuTotal : 0,
      remote_user: client && peer !== null ? peer.cpuUser : 0,
      remote_system: client && peer !== null ? peer.cpuSystem : 0,
    };
    if (!st.udp) {
      const localSender = run.streams.some((s) => s.sender);
      const localReceiver = run.streams.some((s) => !s.sender);
      const remoteCc = client ? peer?.congestionUsed : undefined;
      const sender = localSender ? this.congestion : remoteCc;
      const receiver = localReceiver ? this.congestion : remoteCc;
      if (sender !== undefined && (localSender || client)) end.sender_tcp_congestion = sender;
      if (receiver !== undefined && (localReceiver || client)) end.receiver_tcp_congestion = receiver;
    }
    if (this.verbose) {
      const c = run.cpu;
      const r = peer ?? { cpuTotal: 0, cpuUser: 0, cpuSystem: 0 };
      const localIsSender = run.streams.some((s) => s.sender);
      this.out.line(
        `CPU Utilization: local/${localIsSender ? 'sender' : 'receiver'} ${c.total.toFixed(1)}% (${c.user.toFixed(1)}%u/${c.system.toFixed(1)}%s), remote/${localIsSender ? 'receiver' : 'sender'} ${r.cpuTotal.toFixed(1)}% (${r.cpuUser.toFixed(1)}%u/${r.cpuSystem.toFixed(1)}%s)`,
      );
      const snd = end.sender_tcp_congestion;
      const rcv = end.receiver_tcp_congestion;
      if (typeof snd === 'string') this.out.line(`snd_tcp_congestion ${snd}`);
      if (typeof rcv === 'string') this.out.line(`rcv_tcp_congestion ${rcv}`);
    }
    return end;
  }

  private tcpLine(tag: string, end: number, bytes: number, retr: number | undefined, what: string): string {
    const head = `${tag}${intervalField(0, end)}  ${unitString(bytes, 'A')}s  ${unitString(end > 0 ? bytes / end : 0, this.format)}s/sec`;
    return retr !== undefined ? `${head}  ${String(retr).padStart(3)}             ${what}` : `${head}                  ${what}`;
  }

  private udpLine(tag: string, start: number, end: number, bytes: number, jitter: number, lost: number, packets: number, what: string): string {
    const secs = end - start;
    return `${tag}${intervalField(start, end)}  ${unitString(bytes, 'A')}s  ${unitString(secs > 0 ? bytes / secs : 0, this.format)}s/sec  ${fixed(jitter * 1000, 5, 3)} ms  ${lost}/${packets} (${g2(lostPercent(lost, packets))}%)  ${what}`;
  }

  private endSums(end: Record<string, unknown>, group: Stream[], suffix: string, run: TestRun, peer: PeerResults | null): void {
    const st = run.settings;
    const s0 = group[0];
    if (s0 === undefined) return;
    const client = this.role === 'client';
    const snd = group.map((s) => this.senderSide(s, peer));
    const rcv = group.map((s) => this.receiverSide(s, peer));
    const sb = snd.reduce((a, x) => a + x.bytes, 0);
    const rb = rcv.reduce((a, x) => a + x.bytes, 0);
    const se = Math.max(...snd.map((x) => x.end));
    const re = Math.max(...rcv.map((x) => x.end));
    const retr = snd.some((x) => x.retransmits !== undefined) ? snd.reduce((a, x) => a + (x.retransmits ?? 0), 0) : undefined;
    const tag = `[SUM]${this.roleTag(s0, st)}`;
    if (st.udp) {
      const sp = snd.reduce((a, x) => a + x.packets, 0);
      const rp = rcv.reduce((a, x) => a + x.packets, 0);
      const lost = rcv.reduce((a, x) => a + x.errors, 0);
      const jit = rcv.reduce((a, x) => a + x.jitter, 0) / rcv.length;
      end[`sum${suffix}`] = { start: 0, end: re, seconds: re, bytes: sb, bits_per_second: rate(sb, se), jitter_ms: jit * 1000, lost_packets: lost, packets: rp, lost_percent: lostPercent(lost, rp), sender: s0.sender };
      end[`sum_sent${suffix}`] = { start: 0, end: se, seconds: se, bytes: sb, bits_per_second: rate(sb, se), jitter_ms: 0, lost_packets: 0, packets: sp, lost_percent: 0, sender: true };
      end[`sum_received${suffix}`] = { start: 0, end: re, seconds: re, bytes: rb, bits_per_second: rate(rb, re), jitter_ms: jit * 1000, lost_packets: lost, packets: rp, lost_percent: lostPercent(lost, rp), sender: false };
      if (st.parallel > 1) {
        if (client || s0.sender) this.out.line(this.udpLine(tag, 0, se, sb, 0, 0, sp, 'sender'));
        if (client || !s0.sender) this.out.line(this.udpLine(tag, 0, re, rb, jit, lost, rp, 'receiver'));
      }
      return;
    }
    const sent: Record<string, unknown> = { start: 0, end: se, seconds: se, bytes: sb, bits_per_second: rate(sb, se) };
    if (retr !== undefined) sent.retransmits = retr;
    sent.sender = s0.sender;
    end[`sum_sent${suffix}`] = sent;
    end[`sum_received${suffix}`] = { start: 0, end: re, seconds: re, bytes: rb, bits_per_second: rate(rb, re), sender: s0.sender };
    if (st.parallel > 1) {
      if (client || s0.sender) this.out.line(this.tcpLine(tag, se, sb, retr, 'sender'));
      if (client || !s0.sender) this.out.line(this.tcpLine(tag, re, rb, undefined, 'receiver'));
    }
  }

  /** The whole -J document. */
  document(end: Record<string, unknown> | undefined, extra: Record<string, unknown> = {}): Record<string, unknown> {
    const doc: Record<string, unknown> = { start: this.start, intervals: this.intervals, end: end ?? {} };
    if (this.error !== undefined) doc.error = this.error;
    return { ...doc, ...extra };
  }

  printDocument(end: Record<string, unknown> | undefined, extra: Record<string, unknown> = {}): void {
    this.out.raw(`${cjson(this.document(end, extra))}\n`);
  }
}
