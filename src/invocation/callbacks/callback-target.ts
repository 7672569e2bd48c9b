import dns from 'node:dns';
import net from 'node:net';
import { InvalidInputError } from '../../errors.ts';
import { parseCidr } from '../../sandbox/network/cidr.ts';

/*
 * A callback is a request the server makes on a caller's behalf, so where it
 * may go is the operator's decision (SNAPFN_CALLBACK_ALLOW), never the
 * caller's. Checked twice: the URL when the invocation is accepted (400),
 * and every address the host name resolves to when the callback is sent (a
 * name that passed can point at 127.0.0.1 by then: DNS rebinding).
 */

/** Loopback only: a receiver on the same machine (a sidecar, a test) and nothing else. */
export const DEFAULT_CALLBACK_ALLOW = 'localhost,127.0.0.0/8,::1';

/**
 * Addresses no host-name entry grants: loopback, private, link-local (cloud
 * metadata at 169.254.169.254), CGNAT, benchmarking, multicast, reserved,
 * unspecified. Only an address or CIDR entry opens them.
 */
const INTERNAL = new net.BlockList();
for (const [a, p] of [['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12], ['192.0.0.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['224.0.0.0', 3]] as const) INTERNAL.addSubnet(a, p, 'ipv4');
for (const [a, p] of [['::', 127], ['fc00::', 7], ['fe80::', 10], ['ff00::', 8], ['64:ff9b::', 96]] as const) INTERNAL.addSubnet(a, p, 'ipv6');

export interface CallbackAllowList {
  /** What was configured, normalized (for messages). */
  readonly text: string;
  /** `*`: any host name whose addresses are public. */
  readonly anyPublicHost: boolean;
  readonly hosts: ReadonlySet<string>;
  /** `*.example.com` entries, as `.example.com`. */
  readonly suffixes: readonly string[];
  readonly networks: net.BlockList;
}

/** Comma- or space-separated: `*`, host names, `*.domain`, addresses and CIDRs. Throws on anything else. */
export function parseAllowList(text: string): CallbackAllowList {
  const hosts = new Set<string>();
  const suffixes: string[] = [];
  const networks = new net.BlockList();
  let anyPublicHost = false;
  const items = text.split(/[\s,]+/).filter(Boolean);
  for (const raw of items) {
    const item = raw.toLowerCase();
    const cidr = parseCidr(item);
    if (cidr) {
      const [address, prefix] = cidr.text.split('/') as [string, string];
      networks.addSubnet(address, Number(prefix), cidr.family === 4 ? 'ipv4' : 'ipv6');
    } else if (item === '*') anyPublicHost = true;
    else if (/^\*\.[a-z0-9-]+(\.[a-z0-9-]+)*$/.test(item)) suffixes.push(item.slice(1));
    else if (/^[a-z0-9-]+(\.[a-z0-9-]+)*$/.test(item)) hosts.add(item);
    else throw new InvalidInputError(`SNAPFN_CALLBACK_ALLOW: ${JSON.stringify(raw.slice(0, 64))} is not a host name, *.domain, address or CIDR`);
  }
  // Naming localhost is granting loopback: that is what the name means.
  if (hosts.has('localhost')) {
    networks.addSubnet('127.0.0.0', 8, 'ipv4');
    networks.addAddress('::1', 'ipv6');
  }
  return { text: items.join(','), anyPublicHost, hosts, suffixes, networks };
}

/**
 * The URL a caller asked to be called back at, if the operator allows it:
 * http(s), no credentials in it, a host the allow-list names (an address
 * literal must lie in one of its networks, or be public with `*`).
 */
export function checkCallbackUrl(input: string, allow: CallbackAllowList): URL {
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    throw new InvalidInputError('the callback URL is not a URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new InvalidInputError('the callback URL must be http:// or https://');
  if (url.username || url.password) throw new InvalidInputError('the callback URL must not carry credentials (sign with SNAPFN_CALLBACK_SECRET instead)');
  if (input.length > 2048) throw new InvalidInputError('the callback URL is longer than 2048 characters');
  const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  const allowed = net.isIP(host) ? addressAllowed(host, allow) : hostAllowed(host, allow);
  if (!allowed) throw new InvalidInputError(`callbacks to ${host} are not allowed (SNAPFN_CALLBACK_ALLOW is ${JSON.stringify(allow.text)})`);
  return url;
}

function hostAllowed(host: string, allow: CallbackAllowList): boolean {
  return allow.anyPublicHost || allow.hosts.has(host) || allow.suffixes.some((s) => host.endsWith(s));
}

/** An address the callback may connect to: inside a granted network, or public where host names are trusted. */
export function addressAllowed(address: string, allow: CallbackAllowList, viaAllowedName = allow.anyPublicHost): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1];
  const ip = mapped ?? address;
  const type = net.isIPv4(ip) ? 'ipv4' : 'ipv6';
  if (allow.networks.check(ip, type)) return true;
  return viaAllowedName && !INTERNAL.check(ip, type);
}

/**
 * A `lookup` for http.request that refuses addresses the allow-list does
 * not grant. The check and the connect use the same resolution, so a name
 * cannot resolve to a public address for the check and a private one for
 * the connection.
 */
export function guardedLookup(allow: CallbackAllowList): net.LookupFunction {
  return (hostname, options, callback) => {
    dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, '', 0);
      const list = addresses as dns.LookupAddress[];
      const usable = list.filter((a) => addressAllowed(a.address, allow, true));
      if (usable.length === 0) {
        const denied = Object.assign(new Error(`${hostname} resolves to ${list.map((a) => a.address).join(', ')}, which SNAPFN_CALLBACK_ALLOW does not grant`), { code: 'ECALLBACKDENIED' });
        return callback(denied, '', 0);
      }
      if ((options as dns.LookupOptions).all) return (callback as unknown as (e: null, a: dns.LookupAddress[]) => void)(null, usable);
      callback(null, usable[0]!.address, usable[0]!.family);
    });
  };
}
