/**
 * `@usernet/socket/compliance`: the socket compliance suite (run it from a provider's vitest
 * file) and the README options-table generator. Imports vitest: use it from tests only.
 */
export { CASES, optionCaseTitle, socketCompliance } from './suite.js';
export type { BlackHole, ComplianceFixture, SocketComplianceOptions } from './suite.js';
export { OPTION_PROBES } from './probes.js';
export type { OptionProbe } from './probes.js';
export { extractOptionsTable, OPTION_NOTES, OPTIONS_TABLE_END, OPTIONS_TABLE_START, renderOptionsTable, replaceOptionsTable } from './options-table.js';
export type { ProviderOptionSets } from './options-table.js';
