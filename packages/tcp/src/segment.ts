import { TcpOptionsParsed } from './wire/header.js';

/** @internal One parsed inbound segment; a single instance is reused for every packet. */
export class Segment {
  seq = 0;
  ack = 0;
  flags = 0;
  /** Window field as received (unscaled). */
  window = 0;
  buf: Uint8Array = new Uint8Array(0);
  /** Absolute offset of the payload in `buf`, and its length. */
  payOff = 0;
  payLen = 0;
  readonly opts = new TcpOptionsParsed();
}
