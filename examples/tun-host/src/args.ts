import { parseArgs } from 'node:util';
import { Subnet } from '@usernet/stack';
import type { HostOptions } from './host.js';
import { CONGESTION_CONTROLS } from './host.js';

export const USAGE = `usage: usernet-host --address CIDR [--address CIDR ...] [--peer CIDR ...] [options]

Runs a usernet stack on a Linux TUN device: it answers ping, echoes UDP and TCP on port 7,
counts (discards) UDP and TCP on port 9, and serves HTTP on port 80 (GET /bytes/N answers
N bytes, byte i being i % 251). Needs root (or CAP_NET_ADMIN) to open the device.

  --tun NAME         TUN interface name (<= 15 chars); the kernel picks one when omitted
  --address CIDR     the stack's own address, like 198.18.0.2/24 or fd00::2/64 (repeatable,
                     required; IPv4 and IPv6 side by side)
  --peer CIDR        the kernel side's address on the TUN, like 198.18.0.1/24 or fd00::1/64
                     (repeatable)
  --mtu N            link MTU, 68..65535 (default 1500)
  --no-offload       no virtio-net header: no checksum offload, no TSO/USO
  --cc NAME          TCP congestion control: reno (default) or cubic
  --pcap FILE        capture every packet crossing the TUN to FILE (libpcap, LINKTYPE_RAW)
  --user USER        drop root to USER (and its primary group) once the device is set up;
                     without it, usernet-host stays uid 0 (it warns). Either way it then
                     holds no capabilities and cannot administer the TUN device (seccomp)
  -h, --help         show this help

Prints one line "ready" on stdout once serving. SIGUSR1 prints the counters as one JSON
line; SIGINT / SIGTERM print them and exit 0. With an IPv6 address the services listen
dual-stack on :: (IPv4 peers appear as ::ffff:a.b.c.d), and ping -6 is answered.
`;

export type ParsedArgs = { kind: 'help' } | { kind: 'error'; message: string } | { kind: 'run'; options: HostOptions };

const IFNAME = /^[A-Za-z0-9_.:-]{1,15}$/;

/** Checks one `--address` / `--peer` value: an IPv4 or IPv6 address with an explicit prefix length. */
function checkCidr(flag: string, value: string): string | null {
  if (!value.includes('/')) return `--${flag} ${value}: give a prefix length, like ${value}/24`;
  let s: Subnet;
  try {
    s = Subnet.parse(value);
  } catch {
    return `--${flag} ${value}: not an address with a prefix length (like 198.18.0.2/24 or fd00::2/64)`;
  }
  if (s.address.isUnspecified || s.address.isMulticast || s.address.isLimitedBroadcast) return `--${flag} ${value}: not a unicast address`;
  return null;
}

/**
 * Parses the command line (without `node` and the script). Never throws and never exits:
 * the CLI turns `error` into a message and exit status 2.
 */
export function parseHostArgs(argv: readonly string[]): ParsedArgs {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        tun: { type: 'string' },
        address: { type: 'string', multiple: true },
        peer: { type: 'string', multiple: true },
        mtu: { type: 'string' },
        'no-offload': { type: 'boolean' },
        pcap: { type: 'string' },
        cc: { type: 'string' },
        user: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (e) {
    return { kind: 'error', message: e instanceof Error ? e.message : String(e) };
  }
  if (values.help === true) return { kind: 'help' };

  const addresses = values.address ?? [];
  const peers = values.peer ?? [];
  if (addresses.length === 0) return { kind: 'error', message: 'give at least one --address (the stack side, like 198.18.0.2/24)' };
  for (const a of addresses) {
    const err = checkCidr('address', a);
    if (err !== null) return { kind: 'error', message: err };
  }
  for (const p of peers) {
    const err = checkCidr('peer', p);
    if (err !== null) return { kind: 'error', message: err };
  }
  const own = new Set(addresses.map((a) => Subnet.parse(a).address.toString()));
  for (const p of peers) {
    if (own.has(Subnet.parse(p).address.toString())) return { kind: 'error', message: `--peer ${p}: the same address as an --address` };
  }

  const options: HostOptions = { addresses, peers, offload: values['no-offload'] !== true };
  if (values.tun !== undefined) {
    if (!IFNAME.test(values.tun)) return { kind: 'error', message: `--tun ${JSON.stringify(values.tun)}: an interface name is 1 to 15 letters, digits or _.:-` };
    options.tun = values.tun;
  }
  if (values.mtu !== undefined) {
    const mtu = /^[0-9]+$/.test(values.mtu) ? Number(values.mtu) : NaN;
    if (!(mtu >= 68 && mtu <= 65535)) return { kind: 'error', message: `--mtu ${values.mtu}: an integer from 68 to 65535` };
    options.mtu = mtu;
  }
  if (values.pcap !== undefined) {
    if (values.pcap === '') return { kind: 'error', message: '--pcap needs a file name' };
    options.pcap = values.pcap;
  }
  if (values.cc !== undefined) {
    if (!CONGESTION_CONTROLS.includes(values.cc)) return { kind: 'error', message: `--cc ${JSON.stringify(values.cc)}: one of ${CONGESTION_CONTROLS.join(', ')}` };
    options.cc = values.cc;
  }
  if (values.user !== undefined) {
    if (values.user === '') return { kind: 'error', message: '--user needs a user name' };
    options.user = values.user;
  }
  return { kind: 'run', options };
}
