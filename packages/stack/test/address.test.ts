import { describe, expect, it } from 'vitest';
import { IPAddress, isErrno, Subnet } from '@usernet/stack';

describe('IPAddress', () => {
  it('parses and prints IPv4', () => {
    const a = IPAddress.parse('198.18.0.2');
    expect(a.family).toBe(4);
    expect(Array.from(a.bytes)).toEqual([198, 18, 0, 2]);
    expect(a.toString()).toBe('198.18.0.2');
    expect(a.v4Value).toBe(0xc6120002);
    expect(IPAddress.v4(0xc6120002).equals(a)).toBe(true);
  });

  it('parses and prints IPv6 in RFC 5952 form', () => {
    expect(IPAddress.parse('fd00:0:0:0:0:0:0:2').toString()).toBe('fd00::2');
    expect(IPAddress.parse('FD00::').toString()).toBe('fd00::');
    expect(IPAddress.parse('::').toString()).toBe('::');
    expect(IPAddress.parse('::1').isLoopback).toBe(true);
    expect(IPAddress.parse('1:0:0:2:0:0:0:3').toString()).toBe('1:0:0:2::3');
    const m = IPAddress.parse('::ffff:198.18.0.1');
    expect(m.isV4Mapped).toBe(true);
    expect(m.toString()).toBe('::ffff:198.18.0.1');
  });

  it('rejects bad text with EINVAL', () => {
    for (const bad of ['', '1.2.3', '1.2.3.256', '01.2.3.4', '1::2::3', 'fd00:::1', '1:2:3:4:5:6:7:8:9', 'x', '1.2.3.4.5']) {
      expect(IPAddress.tryParse(bad)).toBeUndefined();
      let err: unknown;
      try {
        IPAddress.parse(bad);
      } catch (e) {
        err = e;
      }
      expect(isErrno(err, 'EINVAL')).toBe(true);
    }
  });

  it('uses equal keys for equal addresses', () => {
    expect(IPAddress.parse('fd00::1').key).toBe(IPAddress.parse('fd00:0::1').key);
    expect(IPAddress.parse('198.18.0.1').key).not.toBe(IPAddress.parse('198.18.0.2').key);
  });
});

describe('Subnet', () => {
  it('matches by prefix', () => {
    const s = Subnet.parse('198.18.0.0/15');
    expect(s.contains(IPAddress.parse('198.19.255.255'))).toBe(true);
    expect(s.contains(IPAddress.parse('198.20.0.0'))).toBe(false);
    expect(s.contains(IPAddress.parse('fd00::1'))).toBe(false);
    const s6 = Subnet.parse('fd00::/8');
    expect(s6.contains(IPAddress.parse('fdff::1'))).toBe(true);
    expect(s6.contains(IPAddress.parse('fe80::1'))).toBe(false);
  });

  it('computes network and broadcast addresses', () => {
    const s = Subnet.parse('198.18.0.2/24');
    expect(s.network.toString()).toBe('198.18.0.0');
    expect(s.broadcast?.toString()).toBe('198.18.0.255');
    expect(Subnet.parse('198.18.0.2/31').broadcast).toBeUndefined();
    expect(Subnet.parse('fd00::2/64').network.toString()).toBe('fd00::');
  });

  it('rejects impossible prefixes', () => {
    expect(() => Subnet.parse('198.18.0.0/33')).toThrow(/EINVAL/);
    expect(() => Subnet.parse('fd00::/129')).toThrow(/EINVAL/);
    expect(() => Subnet.parse('198.18.0.0/x')).toThrow(/EINVAL/);
  });
});
