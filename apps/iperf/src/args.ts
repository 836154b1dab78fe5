/**
 * Command-line parsing for usernet-iperf: iperf3 3.12's flags (getopt_long style: clustered
 * short flags, `-p5201`, `--port=5201`), plus usernet's own: --stack, --tun/--address/--peer,
 * --self, --mtu, --cc, --user.
 */
import { resolveUser } from '@usernet/link-tun';

export const DEFAULT_PORT = 5201;
export const DEFAULT_DURATION = 10;
export const DEFAULT_TCP_BLKSIZE = 128 * 1024;
export const DEFAULT_UDP_BLKSIZE = 1460;
/** iperf3's UDP_RATE: 1 Mbit/s is 1024*1024 bit/s. */
export const DEFAULT_UDP_RATE = 1024 * 1024;
export const MAX_STREAMS = 128;
export const MAX_BLOCKSIZE = 1024 * 1024;
export const MAX_UDP_BLOCKSIZE = 65535 - 8 - 20;
export const MAX_TIME = 86400;
export const MAX_INTERVAL = 60;
export const MIN_INTERVAL = 0.1;
export const MAX_OMIT = 600;
export const MAX_MSS = 9 * 1024;
export const MAX_TCP_BUFFER = 512 * 1024 * 1024;

export interface IperfOptions {
  role: 'server' | 'client';
  /** Client: the server's address (an IP literal). */
  host: string;
  port: number;
  /** Seconds; 0 when -n or -k ends the test. */
  duration: number;
  /** -n: bytes to send (0: not set). */
  bytes: number;
  /** -k: blocks to send (0: not set). */
  blocks: number;
  /** -l: 0 means the protocol default. */
  len: number;
  parallel: number;
  reverse: boolean;
  bidir: boolean;
  udp: boolean;
  /** Bits per second per stream; 0 unlimited; undefined: default (1 Mbit/s for UDP, unlimited for TCP). */
  bandwidth: number | undefined;
  /** Packets per burst (`-b rate/burst`), 0 when not set. */
  burst: number;
  /** Seconds between interval reports; 0 turns them off. */
  interval: number;
  json: boolean;
  congestion: string | undefined;
  omit: number;
  /** -w: SO_SNDBUF and SO_RCVBUF. */
  window: number | undefined;
  /** -M: TCP_MAXSEG. */
  mss: number | undefined;
  nodelay: boolean;
  oneOff: boolean;
  verbose: boolean;
  logfile: string | undefined;
  /** -f: one of kmgtKMGT, or 'a' (adaptive bits). */
  format: string;
  forceflush: boolean;
  title: string | undefined;
  getServerOutput: boolean;
  udpCounters64: boolean;
  repeatingPayload: boolean;
  /** -B: local address. */
  bind: string | undefined;
  /** --cport */
  cport: number;
  /** -4 / -6 */
  family: 4 | 6 | undefined;
  stack: 'netstack' | 'hostinet';
  tun: string | undefined;
  addresses: string[];
  peers: string[];
  self: boolean;
  mtu: number | undefined;
  /** Offload on the TUN / memory link. Default true. */
  offload: boolean;
  /** --user: with --tun, the user to drop root to once the device is set up. */
  user: string | undefined;
}

export type ParseResult =
  | { kind: 'run'; options: IperfOptions }
  | { kind: 'help' }
  | { kind: 'version' }
  | { kind: 'usage-error'; message: string }
  | { kind: 'parameter-error'; message: string };

interface Spec {
  short?: string;
  long: string;
  arg: boolean;
}

const SPECS: Spec[] = [
  { short: 's', long: 'server', arg: false },
  { short: 'c', long: 'client', arg: true },
  { short: 'p', long: 'port', arg: true },
  { short: 't', long: 'time', arg: true },
  { short: 'n', long: 'bytes', arg: true },
  { short: 'k', long: 'blockcount', arg: true },
  { short: 'l', long: 'length', arg: true },
  { short: 'P', long: 'parallel', arg: true },
  { short: 'R', long: 'reverse', arg: false },
  { long: 'bidir', arg: false },
  { short: 'u', long: 'udp', arg: false },
  { short: 'b', long: 'bitrate', arg: true },
  { long: 'bandwidth', arg: true },
  { short: 'i', long: 'interval', arg: true },
  { short: 'J', long: 'json', arg: false },
  { short: 'C', long: 'congestion', arg: true },
  { long: 'cc', arg: true },
  { short: 'O', long: 'omit', arg: true },
  { short: 'w', long: 'window', arg: true },
  { short: 'M', long: 'set-mss', arg: true },
  { short: 'N', long: 'no-delay', arg: false },
  { short: '1', long: 'one-off', arg: false },
  { short: 'V', long: 'verbose', arg: false },
  { long: 'logfile', arg: true },
  { short: 'f', long: 'format', arg: true },
  { long: 'forceflush', arg: false },
  { short: 'T', long: 'title', arg: true },
  { long: 'get-server-output', arg: false },
  { long: 'udp-counters-64bit', arg: false },
  { long: 'repeating-payload', arg: false },
  { short: 'B', long: 'bind', arg: true },
  { long: 'cport', arg: true },
  { short: '4', long: 'version4', arg: false },
  { short: '6', long: 'version6', arg: false },
  { short: 'v', long: 'version', arg: false },
  { short: 'h', long: 'help', arg: false },
  { long: 'stack', arg: true },
  { long: 'tun', arg: true },
  { long: 'address', arg: true },
  { long: 'peer', arg: true },
  { long: 'self', arg: false },
  { long: 'mtu', arg: true },
  { long: 'no-offload', arg: false },
  { long: 'user', arg: true },
];

/** iperf3's unit_atof: k/m/g/t suffixes are powers of 1024 (sizes). */
export function parseSize(text: string): number {
  return parseUnit(text, 1024);
}

/** iperf3's unit_atof_rate: k/m/g/t suffixes are powers of 1000 (rates). */
export function parseRate(text: string): number {
  return parseUnit(text, 1000);
}

function parseUnit(text: string, base: number): number {
  const m = /^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([kKmMgGtT]?)\s*$/.exec(text);
  if (m === null) return NaN;
  const n = Number(m[1]);
  const exp = { '': 0, k: 1, m: 2, g: 3, t: 4 }[(m[2] ?? '').toLowerCase()] ?? 0;
  return n * base ** exp;
}

function integer(text: string): number {
  return /^[-+]?[0-9]+$/.test(text.trim()) ? Number(text) : NaN;
}

function defaults(): IperfOptions {
  return {
    role: 'client',
    host: '',
    port: DEFAULT_PORT,
    duration: DEFAULT_DURATION,
    bytes: 0,
    blocks: 0,
    len: 0,
    parallel: 1,
    reverse: false,
    bidir: false,
    udp: false,
    bandwidth: undefined,
    burst: 0,
    interval: 1,
    json: false,
    congestion: undefined,
    omit: 0,
    window: undefined,
    mss: undefined,
    nodelay: false,
    oneOff: false,
    verbose: false,
    logfile: undefined,
    format: 'a',
    forceflush: false,
    title: undefined,
    getServerOutput: false,
    udpCounters64: false,
    repeatingPayload: false,
    bind: undefined,
    cport: 0,
    family: undefined,
    stack: 'netstack',
    tun: undefined,
    user: undefined,
    addresses: [],
    peers: [],
    self: false,
    mtu: undefined,
    offload: true,
  };
}

/** Parses argv (without `node` and the script). Never throws. */
export function parseIperfArgs(argv: readonly string[]): ParseResult {
  const pairs: [Spec, string | undefined][] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    if (a.startsWith('--') && a.length > 2) {
      const eq = a.indexOf('=');
      const name = eq < 0 ? a.slice(2) : a.slice(2, eq);
      const spec = SPECS.find((s) => s.long === name);
      if (spec === undefined) return { kind: 'usage-error', message: `unrecognized option '${eq < 0 ? a : a.slice(0, eq)}'` };
      if (spec.arg) {
        if (eq >= 0) pairs.push([spec, a.slice(eq + 1)]);
        else if (i + 1 < argv.length) pairs.push([spec, argv[++i]]);
        else return { kind: 'usage-error', message: `option '--${name}' requires an argument` };
      } else {
        if (eq >= 0) return { kind: 'usage-error', message: `option '--${name}' doesn't allow an argument` };
        pairs.push([spec, undefined]);
      }
    } else if (a.startsWith('-') && a.length > 1) {
      for (let j = 1; j < a.length; j++) {
        const ch = a[j] ?? '';
        const spec = SPECS.find((s) => s.short === ch);
        if (spec === undefined) return { kind: 'usage-error', message: `invalid option -- '${ch}'` };
        if (spec.arg) {
          if (j + 1 < a.length) pairs.push([spec, a.slice(j + 1)]);
          else if (i + 1 < argv.length) pairs.push([spec, argv[++i]]);
          else return { kind: 'usage-error', message: `option requires an argument -- '${ch}'` };
          break;
        }
        pairs.push([spec, undefined]);
      }
    } else {
      // getopt permutes: iperf3 ignores stray operands; we reject them to catch typos.
      return { kind: 'usage-error', message: `unexpected argument '${a}'` };
    }
  }

  const o = defaults();
  let server = false;
  let client = false;
  let timeSet = false;
  let bandwidthSet = false;
  const clientOnly: string[] = [];
  for (const [spec, value] of pairs) {
    const v = value ?? '';
    const name = spec.long;
    switch (name) {
      case 'help':
        return { kind: 'help' };
      case 'version':
        return { kind: 'version' };
      case 'server':
        server = true;
        break;
      case 'client':
        client = true;
        o.host = v;
        break;
      case 'port': {
        const p = integer(v);
        if (!(p >= 1 && p <= 65535)) return { kind: 'parameter-error', message: `invalid port ${v}` };
        o.port = p;
        break;
      }
      case 'time': {
        const t = Number(v);
        if (!Number.isFinite(t) || t < 0 || t > MAX_TIME) return { kind: 'parameter-error', message: `test duration valid values are 0 to ${MAX_TIME} seconds` };
        o.duration = t;
        timeSet = true;
        clientOnly.push(name);
        break;
      }
      case 'bytes':
        o.bytes = parseSize(v);
        if (!(o.bytes >= 0)) return { kind: 'parameter-error', message: `bad --bytes value ${v}` };
        clientOnly.push(name);
        break;
      case 'blockcount':
        o.blocks = parseSize(v);
        if (!(o.blocks >= 0)) return { kind: 'parameter-error', message: `bad --blockcount value ${v}` };
        clientOnly.push(name);
        break;
      case 'length':
        o.len = Math.floor(parseSize(v));
        if (!(o.len >= 1)) return { kind: 'parameter-error', message: 'block size too large (maximum = 1048576 bytes)' };
        clientOnly.push(name);
        break;
      case 'parallel':
        o.parallel = integer(v);
        if (!(o.parallel >= 1)) return { kind: 'parameter-error', message: `bad --parallel value ${v}` };
        if (o.parallel > MAX_STREAMS) return { kind: 'parameter-error', message: `number of parallel streams too large (maximum = ${MAX_STREAMS})` };
        clientOnly.push(name);
        break;
      case 'reverse':
        o.reverse = true;
        clientOnly.push(name);
        break;
      case 'bidir':
        o.bidir = true;
        clientOnly.push(name);
        break;
      case 'udp':
        o.udp = true;
        clientOnly.push(name);
        break;
      case 'bitrate':
      case 'bandwidth': {
        const [rate, burst] = v.split('/');
        const r = parseRate(rate ?? '');
        if (!(r >= 0)) return { kind: 'parameter-error', message: `bad bitrate ${v}` };
        o.bandwidth = r;
        bandwidthSet = true;
        if (burst !== undefined) {
          const b = integer(burst);
          if (!(b >= 1 && b <= 1000)) return { kind: 'parameter-error', message: 'invalid burst count (maximum = 1000)' };
          o.burst = b;
        }
        clientOnly.push(name);
        break;
      }
      case 'interval': {
        const t = Number(v);
        if (!Number.isFinite(t) || (t !== 0 && (t < MIN_INTERVAL || t > MAX_INTERVAL))) {
          return { kind: 'parameter-error', message: `invalid report interval (min = ${MIN_INTERVAL}, max = ${MAX_INTERVAL} seconds)` };
        }
        o.interval = t;
        break;
      }
      case 'json':
        o.json = true;
        break;
      case 'congestion':
      case 'cc':
        o.congestion = v;
        break;
      case 'omit': {
        const t = Number(v);
        if (!Number.isFinite(t) || t < 0 || t > MAX_OMIT) return { kind: 'parameter-error', message: 'bogus value for --omit' };
        o.omit = t;
        clientOnly.push(name);
        break;
      }
      case 'window': {
        const w = parseSize(v);
        if (!(w >= 0) || w > MAX_TCP_BUFFER) return { kind: 'parameter-error', message: `socket buffer size too large (maximum = ${MAX_TCP_BUFFER} bytes)` };
        o.window = Math.floor(w);
        clientOnly.push(name);
        break;
      }
      case 'set-mss': {
        const m = integer(v);
        if (!(m >= 1) || m > MAX_MSS) return { kind: 'parameter-error', message: `TCP MSS too large (maximum = ${MAX_MSS} bytes)` };
        o.mss = m;
        clientOnly.push(name);
        break;
      }
      case 'no-delay':
        o.nodelay = true;
        clientOnly.push(name);
        break;
      case 'one-off':
        o.oneOff = true;
        break;
      case 'verbose':
        o.verbose = true;
        break;
      case 'logfile':
        o.logfile = v;
        break;
      case 'format':
        if (!/^[kmgtKMGT]$/.test(v)) return { kind: 'parameter-error', message: 'bad format specifier (valid formats are in the set [kmgtKMGT])' };
        o.format = v;
        break;
      case 'forceflush':
        o.forceflush = true;
        break;
      case 'title':
        o.title = v;
        clientOnly.push(name);
        break;
      case 'get-server-output':
        o.getServerOutput = true;
        clientOnly.push(name);
        break;
      case 'udp-counters-64bit':
        o.udpCounters64 = true;
        clientOnly.push(name);
        break;
      case 'repeating-payload':
        o.repeatingPayload = true;
        clientOnly.push(name);
        break;
      case 'bind':
        o.bind = v;
        break;
      case 'cport': {
        const p = integer(v);
        if (!(p >= 1 && p <= 65535)) return { kind: 'parameter-error', message: `invalid port ${v}` };
        o.cport = p;
        clientOnly.push(name);
        break;
      }
      case 'version4':
        o.family = 4;
        break;
      case 'version6':
        o.family = 6;
        break;
      case 'stack':
        if (v !== 'netstack' && v !== 'hostinet') return { kind: 'parameter-error', message: `--stack ${v}: netstack or hostinet` };
        o.stack = v;
        break;
      case 'tun':
        if (!/^[A-Za-z0-9_.:-]{1,15}$/.test(v)) return { kind: 'parameter-error', message: `--tun ${JSON.stringify(v)}: an interface name is 1 to 15 letters, digits or _.:-` };
        o.tun = v;
        break;
      case 'user':
        try {
          resolveUser(v); // before any device is touched: an unknown user is a parameter error
        } catch (e) {
          return { kind: 'parameter-error', message: `--user ${v}: ${e instanceof Error ? e.message : String(e)}` };
        }
        o.user = v;
        break;
      case 'address':
        if (!v.includes('/')) return { kind: 'parameter-error', message: `--address ${v}: give a prefix length, like ${v}/24` };
        o.addresses.push(v);
        break;
      case 'peer':
        if (!v.includes('/')) return { kind: 'parameter-error', message: `--peer ${v}: give a prefix length, like ${v}/24` };
        o.peers.push(v);
        break;
      case 'self':
        o.self = true;
        break;
      case 'mtu': {
        const m = integer(v);
        if (!(m >= 68 && m <= 65535)) return { kind: 'parameter-error', message: `--mtu ${v}: an integer from 68 to 65535` };
        o.mtu = m;
        break;
      }
      case 'no-offload':
        o.offload = false;
        break;
    }
  }

  if (server && client) return { kind: 'parameter-error', message: 'cannot be both server and client' };
  if (!server && !client && !o.self) return { kind: 'parameter-error', message: 'must either be a client (-c) or server (-s)' };
  o.role = server ? 'server' : 'client';
  if (o.self) {
    if (server) return { kind: 'parameter-error', message: '--self runs a client and a server: give client flags, not -s' };
    if (o.stack !== 'netstack') return { kind: 'parameter-error', message: '--self needs --stack netstack' };
    if (o.tun !== undefined) return { kind: 'parameter-error', message: '--self and --tun exclude each other' };
    if (o.host === '') o.host = '198.18.0.2';
  }
  if (o.role === 'server' && clientOnly.length > 0) return { kind: 'parameter-error', message: 'some option you are trying to set is client only' };
  if (o.reverse && o.bidir) return { kind: 'parameter-error', message: 'cannot be both reverse and bidirectional' };
  const ends = (timeSet ? 1 : 0) + (o.bytes > 0 ? 1 : 0) + (o.blocks > 0 ? 1 : 0);
  if (ends > 1) return { kind: 'parameter-error', message: 'only one test end condition (-t, -n, -k) may be specified' };
  if (o.bytes > 0 || o.blocks > 0) o.duration = 0;
  if (o.len > (o.udp ? MAX_UDP_BLOCKSIZE : MAX_BLOCKSIZE)) {
    return { kind: 'parameter-error', message: o.udp ? `block size invalid (minimum = 16 bytes, maximum = ${MAX_UDP_BLOCKSIZE} bytes)` : `block size too large (maximum = ${MAX_BLOCKSIZE} bytes)` };
  }
  if (o.udp && o.len !== 0 && o.len < 16) return { kind: 'parameter-error', message: `block size invalid (minimum = 16 bytes, maximum = ${MAX_UDP_BLOCKSIZE} bytes)` };
  if (!bandwidthSet) o.bandwidth = undefined;
  if (o.stack === 'netstack' && !o.self && o.tun === undefined && o.addresses.length === 0) {
    return { kind: 'parameter-error', message: 'the netstack needs a link: give --self, or --tun NAME --address CIDR [--peer CIDR] (or use --stack hostinet)' };
  }
  if (o.stack === 'netstack' && !o.self && o.addresses.length === 0) return { kind: 'parameter-error', message: '--tun needs at least one --address (the stack side, like 198.18.0.2/24)' };
  if (o.user !== undefined && (o.stack !== 'netstack' || o.self)) return { kind: 'parameter-error', message: '--user is for --tun (the netstack on a TUN device)' };
  if (o.stack === 'hostinet' && (o.tun !== undefined || o.addresses.length > 0 || o.peers.length > 0)) {
    return { kind: 'parameter-error', message: '--tun, --address and --peer are for --stack netstack' };
  }
  return { kind: 'run', options: o };
}

export const USAGE_SHORT = `Usage: usernet-iperf [-s|-c host] [options]
       usernet-iperf [-h|--help] [-v|--version]
`;

export const USAGE = `${USAGE_SHORT}
An iperf3 3.12 compatible client and server over usernet's userspace stack (netstack, the
default) or the host kernel's sockets (hostinet). It interoperates with the real iperf3.

Server or Client:
  -p, --port      #         server port to listen on/connect to (default 5201)
  -f, --format   [kmgtKMGT] format to report: Kbits, Mbits, Gbits, Tbits
  -i, --interval  #         seconds between periodic throughput reports (0: none)
  -B, --bind      <host>    bind to the interface associated with the address <host>
  -V, --verbose             more detailed output
  -J, --json                output in JSON format
  --logfile f               send output to a log file
  --forceflush              force flushing output at every interval
  -v, --version             show version information and quit
  -h, --help                show this message and quit
Server specific:
  -s, --server              run in server mode
  -1, --one-off             handle one client connection then exit
Client specific:
  -c, --client    <host>    run in client mode, connecting to <host> (an IP address)
  -u, --udp                 use UDP rather than TCP
  -b, --bitrate #[KMG][/#]  target bitrate in bits/sec (0 for unlimited)
                            (default 1 Mbit/sec for UDP, unlimited for TCP)
                            (optional slash and packet count for burst mode)
  -t, --time      #         time in seconds to transmit for (default 10 secs)
  -n, --bytes     #[KMG]    number of bytes to transmit (instead of -t)
  -k, --blockcount #[KMG]   number of blocks (packets) to transmit (instead of -t or -n)
  -l, --length    #[KMG]    length of buffer to read or write
                            (default 128 KB for TCP, the control connection's MSS or 1460 for UDP)
  --cport         <port>    bind to a specific client port
  -P, --parallel  #         number of parallel client streams to run
  -R, --reverse             run in reverse mode (server sends, client receives)
  --bidir                   run in bidirectional mode
  -w, --window    #[KMG]    set send/receive socket buffer sizes
  -C, --congestion <algo>   set TCP congestion control algorithm (--cc is an alias)
  -M, --set-mss   #         set TCP maximum segment size
  -N, --no-delay            set TCP no delay, disabling Nagle's Algorithm
  -4, --version4            only use IPv4
  -6, --version6            only use IPv6
  -O, --omit N              perform pre-test for N seconds and omit the pre-test statistics
  -T, --title str           prefix every output line with this string
  --get-server-output       get results from server
  --udp-counters-64bit      use 64-bit counters in UDP test packets
  --repeating-payload       use repeating pattern in payload, instead of randomized payload
usernet:
  --stack netstack|hostinet sockets from usernet's stack (default) or the host kernel
  --tun NAME                netstack on a TUN device (needs root); the kernel picks a name when
                            omitted with --address
  --address CIDR            the stack's own address on the TUN (repeatable: IPv4 and IPv6)
  --peer CIDR               the kernel side's address on the TUN (repeatable)
  --mtu N                   link MTU (TUN default 1500; --self default 65535)
  --no-offload              no checksum offload / TSO on the link
  --user USER               with --tun: drop root to USER once the device is set up (the
                            process is always locked down: no capabilities, no_new_privs,
                            a seccomp filter refusing TUN administration)
  --self                    run client and server on two in-process stacks joined by an
                            in-memory link (198.18.0.1/24 and 198.18.0.2/24); -c optional
`;
