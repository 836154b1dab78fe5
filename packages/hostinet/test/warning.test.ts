import { describe, expect, it } from 'vitest';
import { HOSTINET_WARNING_CODE, hostinet } from '@usernet/hostinet';

describe('hostinet SecurityWarning', () => {
  it('is emitted once per process, at first use, by any provider', async () => {
    const seen: Error[] = [];
    const onWarning = (w: Error): void => {
      if ((w as Error & { code?: string }).code === HOSTINET_WARNING_CODE) seen.push(w);
    };
    process.on('warning', onWarning);
    try {
      const a = hostinet();
      const b = hostinet();
      // Creating a provider is not a use.
      await new Promise((r) => process.nextTick(r));
      expect(seen).toHaveLength(0);

      const u1 = a.createDatagramSocket({ family: 4 });
      const listener = await b.listen({ host: '127.0.0.1', port: 0 });
      const c = a.connect({ host: '127.0.0.1', port: listener.localPort });
      const u2 = b.createDatagramSocket({ family: 6 });
      await new Promise((r) => setImmediate(r));
      c.abort();
      listener.close();
      u1.close();
      u2.close();

      expect(seen).toHaveLength(1);
      const w = seen[0] as Error;
      expect(w.name).toBe('SecurityWarning');
      expect(w.message).toMatch(/host kernel/);
      expect(w.message).toMatch(/attack surface/);
      expect(w.message).toMatch(/netstack/);
    } finally {
      process.off('warning', onWarning);
    }
  });
});
