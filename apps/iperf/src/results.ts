/** The EXCHANGE_RESULTS JSON, both directions. */
import type { PeerResults } from './report.js';
import type { TestRun } from './run.js';
import type { PeerStreamResult } from './stream.js';

export function buildResults(run: TestRun, congestion: string | undefined, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const hasRetr = !run.settings.udp && run.streams.some((s) => s.sender && s.hasInfo);
  const j: Record<string, unknown> = {
    cpu_util_total: run.cpu.total,
    cpu_util_user: run.cpu.user,
    cpu_util_system: run.cpu.system,
    sender_has_retransmits: hasRetr ? 1 : 0,
  };
  if (congestion !== undefined && !run.settings.udp) j.congestion_used = congestion;
  j.streams = run.streams.map((s) => ({
    id: s.id,
    bytes: s.bytes,
    retransmits: s.sender && s.hasInfo ? s.totalRetransmits() : -1,
    jitter: s.sender ? 0 : s.jitter,
    errors: s.sender ? 0 : s.udpErrors,
    omitted_errors: 0,
    packets: s.udpPackets,
    omitted_packets: 0,
    start_time: 0,
    end_time: s.endTime,
  }));
  return { ...j, ...extra };
}

function num(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : 0;
}

export class ResultsError extends Error {}

/** Parses the peer's results and attaches each stream's part (matched by id). */
export function applyResults(run: TestRun, j: Record<string, unknown>): PeerResults {
  const streams = j.streams;
  if (!Array.isArray(streams)) throw new ResultsError('results without streams');
  for (const raw of streams as unknown[]) {
    if (raw === null || typeof raw !== 'object') continue;
    const r = raw as Record<string, unknown>;
    const p: PeerStreamResult = {
      id: num(r.id),
      bytes: num(r.bytes),
      retransmits: num(r.retransmits),
      jitter: num(r.jitter),
      errors: num(r.errors),
      packets: num(r.packets),
      startTime: num(r.start_time),
      endTime: num(r.end_time),
    };
    const s = run.streams.find((x) => x.id === p.id);
    if (s !== undefined) s.peer = p;
  }
  const shr = num(j.sender_has_retransmits);
  return {
    cpuTotal: num(j.cpu_util_total),
    cpuUser: num(j.cpu_util_user),
    cpuSystem: num(j.cpu_util_system),
    // 3.12 prints -1 unsigned (18446744073709551615): only 1 means "has retransmits".
    senderHasRetransmits: shr === 1,
    congestionUsed: typeof j.congestion_used === 'string' ? j.congestion_used : undefined,
    serverOutputJson: j.server_output_json,
    serverOutputText: typeof j.server_output_text === 'string' ? j.server_output_text : undefined,
  };
}
