/**
 * The once-per-process SecurityWarning of hostinet (DESIGN.md rule 9: netstack is the default;
 * hostinet is requested by name and says what it costs).
 */

/** `process.emitWarning` code of the hostinet warning. */
export const HOSTINET_WARNING_CODE = 'USERNET_HOSTINET';

/** The text of the warning. */
export const HOSTINET_WARNING_MESSAGE =
  'usernet hostinet passes sockets through to the host kernel: the host attack surface widens from a ' +
  "packet interface to the kernel's whole socket API (TCP/UDP state machines, options, buffers). " +
  'netstack, usernet\'s own TCP/IP stack, is the default; use hostinet only where that trade is intended.';

let warned = false;

/** Emits the warning the first time any hostinet provider is used in this process. */
export function warnOnce(enabled: boolean): void {
  if (warned || !enabled) return;
  warned = true;
  process.emitWarning(HOSTINET_WARNING_MESSAGE, { type: 'SecurityWarning', code: HOSTINET_WARNING_CODE });
}
