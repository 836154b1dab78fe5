export { CAPTURE_COUNTERS, CaptureLink, withCapture } from './capture.js';
export type { CaptureCounter, CaptureDirection, CaptureOptions } from './capture.js';
export { ChecksumMode, fixTransportChecksum } from './checksum.js';
export { readPcap } from './read.js';
export type { PcapFile, PcapPacket } from './read.js';
export {
  DEFAULT_SNAPLEN,
  LINKTYPE_RAW,
  PCAP_CHUNK,
  PCAP_HEADER_LENGTH,
  PCAP_MAGIC,
  PCAP_MAGIC_NS,
  PCAP_RECORD_HEADER_LENGTH,
  PCAP_VERSION_MAJOR,
  PCAP_VERSION_MINOR,
  PcapWriter,
} from './writer.js';
export type { PcapWriterOptions } from './writer.js';
