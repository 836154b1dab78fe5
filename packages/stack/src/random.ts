import { randomFillSync } from 'node:crypto';

/**
 * Randomness for protocol code (DESIGN.md rule 1): ISNs, ephemeral ports, IP IDs, fault
 * injection. The stack's default is {@link CryptoRandom}; tests pass a {@link SeededRandom} so
 * a run replays exactly from its seed.
 */
export interface Random {
  /** A uniformly distributed unsigned 32-bit integer. */
  uint32(): number;
  /** A float in [0, 1). */
  float(): number;
  /** Fills `buf` with random bytes. */
  fill(buf: Uint8Array): void;
}

/** Cryptographically strong randomness from the host, read in blocks to keep calls cheap. */
export class CryptoRandom implements Random {
  private readonly pool = new Uint32Array(1024);
  private index = 1024;

  uint32(): number {
    if (this.index >= this.pool.length) {
      randomFillSync(this.pool);
      this.index = 0;
    }
    return this.pool[this.index++]!;
  }

  float(): number {
    return this.uint32() / 0x1_0000_0000;
  }

  fill(buf: Uint8Array): void {
    randomFillSync(buf);
  }
}

/**
 * A fast deterministic generator (xoshiro128**, seeded through splitmix32). Not for secrets:
 * for tests and simulations that must replay from a seed.
 */
export class SeededRandom implements Random {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number) {
    let x = seed >>> 0;
    const next = (): number => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  uint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3 >>> 0, 11);
    this.s0 >>>= 0;
    this.s1 >>>= 0;
    this.s2 >>>= 0;
    return result;
  }

  float(): number {
    return this.uint32() / 0x1_0000_0000;
  }

  fill(buf: Uint8Array): void {
    let i = 0;
    for (; i + 4 <= buf.length; i += 4) {
      const v = this.uint32();
      buf[i] = v & 0xff;
      buf[i + 1] = (v >>> 8) & 0xff;
      buf[i + 2] = (v >>> 16) & 0xff;
      buf[i + 3] = v >>> 24;
    }
    if (i < buf.length) {
      let v = this.uint32();
      for (; i < buf.length; i++) {
        buf[i] = v & 0xff;
        v >>>= 8;
      }
    }
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
