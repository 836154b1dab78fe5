/**
 * Counters, like Linux's `nstat`. Each protocol owns a plain object of numbers (fast to bump on
 * the hot path: `stats.PacketsReceived++`); the stack gathers them by protocol name.
 */
export type Counters<K extends string = string> = Record<K, number>;

/** A counters object with every name set to zero. */
export function createCounters<const K extends string>(names: readonly K[]): Counters<K> {
  const c = {} as Counters<K>;
  for (const n of names) c[n] = 0;
  return c;
}

/** A snapshot copy of a counters object. */
export function snapshotCounters<K extends string>(c: Counters<K>): Counters<K> {
  return { ...c };
}
