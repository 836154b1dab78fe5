#!/usr/bin/env node
// Prints the README options table (markdown) from the providers' option sets, or with --write
// puts it into packages/socket/README.md between the markers. Needs a build (npx tsc -b).
import { readFileSync, writeFileSync } from 'node:fs';
import { NETSTACK_CONNECTED_OPTIONS, NETSTACK_DATAGRAM_OPTIONS, NETSTACK_LISTEN_OPTIONS } from '../dist/index.js';
import { renderOptionsTable, replaceOptionsTable } from '../dist/compliance/options-table.js';

const { HOSTINET_DATAGRAM_OPTIONS, HOSTINET_STREAM_OPTIONS } = await import('@usernet/hostinet');

const table = renderOptionsTable({
  netstack: { stream: NETSTACK_CONNECTED_OPTIONS, listen: NETSTACK_LISTEN_OPTIONS, datagram: NETSTACK_DATAGRAM_OPTIONS },
  hostinet: { stream: HOSTINET_STREAM_OPTIONS, datagram: HOSTINET_DATAGRAM_OPTIONS },
});

if (process.argv.includes('--write')) {
  const readme = new URL('../README.md', import.meta.url);
  writeFileSync(readme, replaceOptionsTable(readFileSync(readme, 'utf8'), table));
  console.log('packages/socket/README.md: options table updated');
} else {
  console.log(table);
}
