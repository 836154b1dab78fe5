import { describe, expect, it } from 'vitest';
import { SOCKET_OPTIONS } from '@usernet/socket';
import { HOSTINET_DATAGRAM_OPTIONS, HOSTINET_STREAM_OPTIONS } from '@usernet/hostinet';
import { closePair, connectPair, provider, thrown } from './helpers.js';

describe('hostinet socket options', () => {
  it('every option outside the sets is ENOPROTOOPT, for get and set', async () => {
    const p = await connectPair('127.0.0.1');
    const u = provider.createDatagramSocket({ family: 4 });
    try {
      for (const d of SOCKET_OPTIONS) {
        if (d.applies.includes('stream') && !HOSTINET_STREAM_OPTIONS.has(d.name)) {
          expect(thrown(() => p.client.getsockopt(d.level, d.name)).code, d.name).toBe('ENOPROTOOPT');
          expect(thrown(() => p.client.setsockopt(d.level, d.name, 1)).code, d.name).toBe('ENOPROTOOPT');
        }
        if (d.applies.includes('datagram') && !HOSTINET_DATAGRAM_OPTIONS.has(d.name)) {
          expect(thrown(() => u.getsockopt(d.level, d.name)).code, d.name).toBe('ENOPROTOOPT');
          expect(thrown(() => u.setsockopt(d.level, d.name, 1)).code, d.name).toBe('ENOPROTOOPT');
        }
      }
      // Named ones, for the record: what node:net cannot express.
      for (const name of ['SO_RCVBUF', 'SO_SNDBUF', 'TCP_KEEPINTVL', 'TCP_KEEPCNT', 'TCP_CONGESTION', 'TCP_INFO', 'TCP_INQ']) {
        expect(HOSTINET_STREAM_OPTIONS.has(name)).toBe(false);
      }
      expect(thrown(() => p.client.getsockopt('IPPROTO_IP', 'IP_TTL')).code).toBe('ENOPROTOOPT');
      expect(thrown(() => p.client.getsockopt('SOL_SOCKET', 'SO_NOT_AN_OPTION')).code).toBe('ENOPROTOOPT');
      // Wrong level, wrong family.
      expect(thrown(() => p.client.getsockopt('SOL_SOCKET', 'TCP_NODELAY')).code).toBe('ENOPROTOOPT');
      expect(thrown(() => p.client.getsockopt('IPPROTO_IPV6', 'IPV6_V6ONLY')).code).toBe('ENOPROTOOPT');
      expect(thrown(() => u.getsockopt('IPPROTO_IPV6', 'IPV6_UNICAST_HOPS')).code).toBe('ENOPROTOOPT');
      // Read-only.
      expect(thrown(() => p.client.setsockopt('SOL_SOCKET', 'SO_TYPE', 1)).code).toBe('ENOPROTOOPT');
      // A lingering close Node cannot do.
      expect(thrown(() => p.client.setsockopt('SOL_SOCKET', 'SO_LINGER', { onoff: true, linger: 5 })).code).toBe('ENOPROTOOPT');
    } finally {
      closePair(p);
      u.close();
    }
  });

  it('bad values are EINVAL', async () => {
    const p = await connectPair('127.0.0.1');
    const u = provider.createDatagramSocket({ family: 4 });
    try {
      const c = p.client;
      expect(thrown(() => c.setsockopt('IPPROTO_TCP', 'TCP_NODELAY', 'yes')).code).toBe('EINVAL');
      expect(thrown(() => c.setsockopt('IPPROTO_TCP', 'TCP_KEEPIDLE', 0)).code).toBe('EINVAL');
      expect(thrown(() => c.setsockopt('IPPROTO_TCP', 'TCP_KEEPIDLE', 40000)).code).toBe('EINVAL');
      expect(thrown(() => c.setsockopt('IPPROTO_TCP', 'TCP_KEEPIDLE', 1.5)).code).toBe('EINVAL');
      expect(thrown(() => c.setsockopt('SOL_SOCKET', 'SO_LINGER', 1)).code).toBe('EINVAL');
      expect(thrown(() => u.setsockopt('IPPROTO_IP', 'IP_TTL', 0)).code).toBe('EINVAL');
      expect(thrown(() => u.setsockopt('IPPROTO_IP', 'IP_TTL', 256)).code).toBe('EINVAL');
      expect(thrown(() => u.setsockopt('SOL_SOCKET', 'SO_RCVBUF', -1)).code).toBe('EINVAL');
      expect(thrown(() => u.setsockopt('IPPROTO_IP', 'IP_ADD_MEMBERSHIP', '10.0.0.1')).code).toBe('EINVAL');
      expect(thrown(() => u.setsockopt('IPPROTO_IP', 'IP_ADD_MEMBERSHIP', 5)).code).toBe('EINVAL');
      const err = thrown(() => c.setsockopt('IPPROTO_TCP', 'TCP_KEEPIDLE', -3));
      expect(err.errno).toBe(-22);
      expect(err.syscall).toBe('setsockopt');
    } finally {
      closePair(p);
      u.close();
    }
  });

  it('stream getsockopt: identity, Node defaults, and what was set', async () => {
    const p = await connectPair('::1');
    try {
      const c = p.client;
      expect(c.getsockopt('SOL_SOCKET', 'SO_TYPE')).toBe(1);
      expect(c.getsockopt('SOL_SOCKET', 'SO_DOMAIN')).toBe(10);
      expect(c.getsockopt('SOL_SOCKET', 'SO_PROTOCOL')).toBe(6);
      expect(c.getsockopt('SOL_SOCKET', 'SO_ACCEPTCONN')).toBe(0);
      expect(p.listener.getsockopt('SOL_SOCKET', 'SO_ACCEPTCONN')).toBe(1);
      // Node 20 leaves Nagle on and keepalive off.
      expect(c.getsockopt('IPPROTO_TCP', 'TCP_NODELAY')).toBe(0);
      expect(c.getsockopt('SOL_SOCKET', 'SO_KEEPALIVE')).toBe(0);
      expect(c.getsockopt('SOL_SOCKET', 'SO_LINGER')).toEqual({ onoff: false, linger: 0 });
      expect(c.getsockopt('IPPROTO_IPV6', 'IPV6_V6ONLY')).toBe(0);
      c.setsockopt('IPPROTO_TCP', 'TCP_NODELAY', true);
      c.setsockopt('SOL_SOCKET', 'SO_KEEPALIVE', 1);
      c.setsockopt('IPPROTO_TCP', 'TCP_KEEPIDLE', 30);
      expect(c.getsockopt('IPPROTO_TCP', 'TCP_NODELAY')).toBe(1);
      expect(c.getsockopt('SOL_SOCKET', 'SO_KEEPALIVE')).toBe(1);
      expect(c.getsockopt('IPPROTO_TCP', 'TCP_KEEPIDLE')).toBe(30);
      expect(thrown(() => c.setsockopt('IPPROTO_IPV6', 'IPV6_V6ONLY', 1)).code).toBe('EINVAL');
      expect(thrown(() => p.listener.setsockopt('IPPROTO_IPV6', 'IPV6_V6ONLY', 1)).code).toBe('EINVAL');
    } finally {
      closePair(p);
    }
  });

  it('accepted sockets inherit the listener options; connect applies options before the SYN', async () => {
    const listener = await provider.listen({
      host: '127.0.0.1',
      port: 0,
      options: [
        { level: 'IPPROTO_TCP', name: 'TCP_NODELAY', value: 1 },
        { level: 'SOL_SOCKET', name: 'SO_KEEPALIVE', value: true },
      ],
    });
    try {
      const accepted = new Promise<ReturnType<typeof listener.accept>>((resolve) => {
        listener.onConnection = () => resolve(listener.accept());
      });
      const c = provider.connect({
        host: '127.0.0.1',
        port: listener.localPort,
        options: [{ level: 'IPPROTO_TCP', name: 'TCP_KEEPIDLE', value: 45 }],
      });
      const s = await accepted;
      expect(s?.getsockopt('IPPROTO_TCP', 'TCP_NODELAY')).toBe(1);
      expect(s?.getsockopt('SOL_SOCKET', 'SO_KEEPALIVE')).toBe(1);
      expect(c.getsockopt('IPPROTO_TCP', 'TCP_KEEPIDLE')).toBe(45);
      c.abort();
      s?.abort();
      // A bad option in ListenOptions fails the listen.
      await expect(
        provider.listen({ host: '127.0.0.1', port: 0, options: [{ level: 'IPPROTO_TCP', name: 'TCP_CONGESTION', value: 'cubic' }] }),
      ).rejects.toMatchObject({ code: 'ENOPROTOOPT' });
    } finally {
      listener.close();
    }
  });

  it('datagram options: tracked before bind, applied and read back after', async () => {
    const u = provider.createDatagramSocket({ family: 4 });
    try {
      expect(u.getsockopt('SOL_SOCKET', 'SO_TYPE')).toBe(2);
      expect(u.getsockopt('SOL_SOCKET', 'SO_PROTOCOL')).toBe(17);
      expect(u.getsockopt('SOL_SOCKET', 'SO_BROADCAST')).toBe(0);
      expect(u.getsockopt('IPPROTO_IP', 'IP_TTL')).toBe(64);
      expect(u.getsockopt('IPPROTO_IP', 'IP_MULTICAST_TTL')).toBe(1);
      expect(u.getsockopt('IPPROTO_IP', 'IP_MULTICAST_LOOP')).toBe(1);
      u.setsockopt('SOL_SOCKET', 'SO_BROADCAST', true);
      u.setsockopt('IPPROTO_IP', 'IP_TTL', 7);
      u.setsockopt('SOL_SOCKET', 'SO_SNDBUF', 16384);
      u.setsockopt('IPPROTO_IP', 'IP_ADD_MEMBERSHIP', '239.1.2.3,127.0.0.1');
      expect(thrown(() => u.getsockopt('IPPROTO_IP', 'IP_ADD_MEMBERSHIP')).code).toBe('ENOPROTOOPT');
      await u.bind('0.0.0.0', 0);
      expect(u.getsockopt('SOL_SOCKET', 'SO_BROADCAST')).toBe(1);
      expect(u.getsockopt('IPPROTO_IP', 'IP_TTL')).toBe(7);
      expect(u.getsockopt('SOL_SOCKET', 'SO_SNDBUF')).toBe(32768);
      u.setsockopt('SOL_SOCKET', 'SO_RCVBUF', 100000);
      expect(u.getsockopt('SOL_SOCKET', 'SO_RCVBUF')).toBe(200000);
      expect(thrown(() => u.setsockopt('SOL_SOCKET', 'SO_REUSEADDR', 1)).code).toBe('EINVAL');
      const u6 = provider.createDatagramSocket({ family: 6, ipv6Only: true });
      expect(u6.getsockopt('IPPROTO_IPV6', 'IPV6_V6ONLY')).toBe(1);
      u6.setsockopt('IPPROTO_IPV6', 'IPV6_UNICAST_HOPS', 9);
      await u6.bind('::1', 0);
      expect(u6.getsockopt('IPPROTO_IPV6', 'IPV6_UNICAST_HOPS')).toBe(9);
      expect(thrown(() => u6.setsockopt('IPPROTO_IPV6', 'IPV6_V6ONLY', 0)).code).toBe('EINVAL');
      u6.close();
    } finally {
      u.close();
    }
  });
});
