import type { PacketBuffer } from './buffer.js';

/**
 * The transport header each piece of a GSO super-segment carries (`pkt` starts at the transport
 * header): TCP's data offset, else UDP's 8 bytes. A network protocol checks that `gsoSize` plus
 * this plus its own header fits the path MTU before handing a super-segment to the link.
 */
export function gsoTransportHeaderLength(transportProtocol: number, pkt: PacketBuffer): number {
  if (transportProtocol === 6) return pkt.length >= 20 ? (pkt.data[pkt.start + 12]! >> 4) * 4 : 60;
  return 8;
}
