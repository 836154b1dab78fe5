/** An ICMPv6 echo request fd00::1 → fd00::2, id 0x1234 seq 1, data "abcd"; checksum computed independently (Python). */
export const GOLDEN_ECHO = Buffer.from('60000000000c3a40fd000000000000000000000000000001fd0000000000000000000000000000028000aeb81234000161626364', 'hex');
