import net from 'node:net';

/** One IPv4 or IPv6 network, as iptables takes it (`-d`). */
export interface Cidr {
  family: 4 | 6;
  /** The network address (host bits cleared) and prefix length, e.g. `192.0.2.0/24`. */
  text: string;
}

/** `a.b.c.d`, `a.b.c.d/n`, `v6` or `v6/n` (no prefix: one address); undefined when it is none of these. */
export function parseCidr(input: string): Cidr | undefined {
  const [address = '', prefixText, ...rest] = input.trim().split('/');
  if (rest.length > 0) return undefined;
  const family = net.isIPv4(address) ? 4 : net.isIPv6(address) ? 6 : undefined;
  if (!family) return undefined;
  const bits = family === 4 ? 32 : 128;
  if (prefixText !== undefined && !/^\d{1,3}$/.test(prefixText)) return undefined;
  const prefix = prefixText === undefined ? bits : Number(prefixText);
  if (prefix > bits) return undefined;
  return { family, text: `${networkAddress(address, family, prefix)}/${prefix}` };
}

/** The network `address/prefix` lies in, as text. */
export function networkAddress(address: string, family: 4 | 6, prefix: number): string {
  const bytes = family === 4 ? address.split('.').map(Number) : ipv6Bytes(address);
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, prefix - i * 8));
    bytes[i] = bytes[i]! & ((0xff << (8 - keep)) & 0xff);
  }
  if (family === 4) return bytes.join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  return compressIpv6(groups);
}

function ipv6Bytes(address: string): number[] {
  let text = address.split('%')[0]!;
  // An embedded IPv4 tail (::ffff:192.0.2.1) as two groups.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4[1]!.split('.').map(Number) as [number, number, number, number];
    text = text.slice(0, -v4[1]!.length) + `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return groups.flatMap((g) => {
    const n = parseInt(g, 16);
    return [n >> 8, n & 0xff];
  });
}

function compressIpv6(groups: string[]): string {
  // The longest run of zero groups (two or more) becomes "::" (RFC 5952).
  let best = { at: -1, len: 0 };
  for (let i = 0; i < groups.length; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < groups.length && groups[j] === '0') j++;
    if (j - i > best.len) best = { at: i, len: j - i };
    i = j;
  }
  if (best.len < 2) return groups.join(':');
  return `${groups.slice(0, best.at).join(':')}::${groups.slice(best.at + best.len).join(':')}`;
}
