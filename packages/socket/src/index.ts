export type * from './types.js';
export { SOCKET_OPTIONS, checkSocketOption, findSocketOption, optionBool, optionInt, optionLinger } from './options.js';
export type { OptionSocketKind, OptionValueKind, SocketOptionDefinition } from './options.js';
export { errnoError, UsernetError } from '@usernet/stack';
