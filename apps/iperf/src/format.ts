/**
 * Number and line formatting that reproduces iperf3 3.12's text output (units.c unit_snprintf,
 * iperf_locale.c report formats) and cJSON's formatted printing.
 */

const BYTE_LABELS = ['Byte', 'KByte', 'MByte', 'GByte', 'TByte'];
const BIT_LABELS = ['bit', 'Kbit', 'Mbit', 'Gbit', 'Tbit'];
const FORMAT_INDEX: Record<string, number> = { b: 0, k: 1, m: 2, g: 3, t: 4 };

/** C's `%W.Pf`. */
export function fixed(value: number, width: number, precision: number): string {
  return value.toFixed(precision).padStart(width);
}

/**
 * iperf3's unit_snprintf: `format` 'A' (adaptive bytes, 1024-based), 'a' (adaptive bits,
 * 1000-based), or one of kmgtKMGT (fixed unit; lower case: bits). Bits formats multiply by 8.
 */
export function unitString(value: number, format: string): string {
  const bits = format !== format.toUpperCase() || format === 'a';
  let n = bits ? value * 8 : value;
  const base = bits ? 1000 : 1024;
  let conv: number;
  const f = format.toLowerCase();
  if (f === 'a' || FORMAT_INDEX[f] === undefined) {
    conv = 0;
    let t = n;
    while (t >= base && conv < 4) {
      t /= base;
      conv++;
    }
  } else {
    conv = FORMAT_INDEX[f] ?? 0;
  }
  n /= base ** conv;
  const label = (bits ? BIT_LABELS : BYTE_LABELS)[conv] ?? '';
  const text = n < 9.995 ? fixed(n, 4, 2) : n < 99.95 ? fixed(n, 4, 1) : fixed(n, 4, 0);
  return `${text} ${label}`;
}

/** C's `%.2g` (used for the lost percentage). */
export function g2(value: number): string {
  if (value === 0) return '0';
  if (!Number.isFinite(value)) return String(value);
  const exp = Math.floor(Math.log10(Math.abs(Number(value.toPrecision(2)))));
  if (exp < -4 || exp >= 2) {
    const [m, e] = value.toExponential(1).split('e') as [string, string];
    const mant = m.includes('.') ? m.replace(/\.?0+$/, '') : m;
    const en = Number(e);
    return `${mant}e${en < 0 ? '-' : '+'}${String(Math.abs(en)).padStart(2, '0')}`;
  }
  const s = value.toFixed(Math.max(0, 1 - exp));
  return s.includes('.') ? s.replace(/\.?0+$/, '') : s;
}

/** `[%3d]` */
export function idField(id: number): string {
  return `[${String(id).padStart(3)}]`;
}

/** ` %6.2f-%-6.2f sec` */
export function intervalField(start: number, end: number): string {
  return ` ${fixed(start, 6, 2)}-${end.toFixed(2).padEnd(6)} sec`;
}

function tabs(n: number): string {
  return '\t'.repeat(n);
}

/** Prints a JSON value the way cJSON_Print does (tabs, `"key":\tvalue`, `}, {` between array items). */
export function cjson(value: unknown, depth = 0): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) return 'null';
    return Number.isInteger(value) ? value.toFixed(0) : String(value);
  }
  if (typeof value === 'string' || typeof value === 'boolean') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map((v) => cjson(v, depth + 1)).join(', ')}]`;
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
    if (entries.length === 0) return `{\n${tabs(depth)}}`;
    return `{\n${entries.map(([k, v]) => `${tabs(depth + 1)}${JSON.stringify(k)}:\t${cjson(v, depth + 1)}`).join(',\n')}\n${tabs(depth)}}`;
  }
  return 'null';
}
