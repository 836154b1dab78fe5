import { spawn, spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import net from 'node:net';
import { runIperf } from '@usernet/iperf';

/** The parts of iperf3's -J document the tests look at. */
export interface Sum {
  bytes: number;
  bits_per_second: number;
  packets: number;
  lost_packets: number;
  retransmits?: number;
  sender: boolean;
}

export interface Json {
  start: { test_start: { protocol: string; reverse: number }; connected: { socket: number }[] };
  intervals: { streams: { snd_cwnd?: number }[]; sum?: Sum; sum_bidir_reverse?: Sum }[];
  end: {
    streams: { sender: Sum; receiver: Sum }[];
    sum_sent: Sum;
    sum_received: Sum;
    sum_sent_bidir_reverse: Sum;
    sum_received_bidir_reverse: Sum;
    sender_tcp_congestion?: string;
  };
  error?: string;
}

export const hasIperf3 = spawnSync('iperf3', ['--version'], { encoding: 'utf8' }).stdout?.includes('iperf 3') === true;

/**
 * A port free for TCP and UDP on 127.0.0.1 right now, from 10000-29999: below the kernel's
 * ephemeral range (32768-60999), where other test files' client sockets (the compliance suite
 * opens a thousand at once) would take it again between this check and the server's bind.
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = 10000 + Math.floor(Math.random() * 20000);
    const tcpFree = await new Promise<boolean>((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (!tcpFree) continue;
    const udpFree = await new Promise<boolean>((resolve) => {
      const u = dgram.createSocket('udp4');
      u.once('error', () => resolve(false));
      u.bind(port, '127.0.0.1', () => u.close(() => resolve(true)));
    });
    if (udpFree) return port;
  }
}

/** Runs usernet-iperf in-process; resolves with its exit status and output. */
export async function ours(args: string[], onListening?: (port: number) => void): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runIperf(args, { stdout: (s) => (out += s), stderr: (s) => (err += s), onListening });
  return { code, out, err };
}

/** Runs the real iperf3; resolves with its exit status and output. */
export function real(args: string[], onStart?: () => void): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    const p = spawn('iperf3', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('spawn', () => onStart?.());
    p.on('close', (code) => resolve({ code: code ?? -1, out, err }));
  });
}

/** Waits until a TCP socket listens on `port` (without connecting to it: iperf3 -1 would take that for its client). */
export async function waitListening(port: number, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const r = spawnSync('ss', ['-ltnH', `sport = :${port}`], { encoding: 'utf8' });
    if (r.stdout.includes(`:${port}`)) return;
    await new Promise((res) => setTimeout(res, 25));
  }
}

export function parseJson(text: string): Json {
  return JSON.parse(text) as Json;
}
