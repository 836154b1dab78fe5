/**
 * The options table in README.md is generated from the providers' option sets: this fails when
 * the README is out of date. Regenerate with `UPDATE_OPTIONS_TABLE=1 npx vitest run
 * packages/socket/test/options-table.test.ts` or `node packages/socket/scripts/options-table.js --write`
 * (after `npx tsc -b`).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { NETSTACK_CONNECTED_OPTIONS, NETSTACK_DATAGRAM_OPTIONS, NETSTACK_LISTEN_OPTIONS, SOCKET_OPTIONS } from '@usernet/socket';
import { HOSTINET_DATAGRAM_OPTIONS, HOSTINET_STREAM_OPTIONS } from '@usernet/hostinet';
import { extractOptionsTable, renderOptionsTable, replaceOptionsTable } from '@usernet/socket/compliance';

const README = new URL('../README.md', import.meta.url);

describe('README options table', () => {
  const table = renderOptionsTable({
    netstack: { stream: NETSTACK_CONNECTED_OPTIONS, listen: NETSTACK_LISTEN_OPTIONS, datagram: NETSTACK_DATAGRAM_OPTIONS },
    hostinet: { stream: HOSTINET_STREAM_OPTIONS, datagram: HOSTINET_DATAGRAM_OPTIONS },
  });

  it('lists every option once', () => {
    const rows = table.split('\n').slice(2);
    expect(rows.length).toBe(SOCKET_OPTIONS.length);
    for (const def of SOCKET_OPTIONS) expect(rows.filter((r) => r.startsWith(`| \`${def.name}\` |`)).length, def.name).toBe(1);
  });

  it('is up to date in README.md', () => {
    const readme = readFileSync(README, 'utf8');
    if (process.env.UPDATE_OPTIONS_TABLE === '1') writeFileSync(README, replaceOptionsTable(readme, table));
    const current = extractOptionsTable(readFileSync(README, 'utf8'));
    expect(current, 'README.md options table is stale: run node packages/socket/scripts/options-table.js --write').toBe(table);
  });
});
