/**
 * A node:net compatible façade over any {@link SocketProvider}: `Socket` is a `stream.Duplex`
 * with net.Socket's methods, properties, events and error shapes (net-socket.ts); `Server` is an
 * EventEmitter with net.Server's (net-server.ts). Written only against the provider interface, so
 * it runs unchanged over the netstack and over hostinet.
 */
import { isIP, isIPv4, isIPv6 } from 'node:net';
import type { FacadeOptions } from './lookup.js';
import { chooseProvider, defaultLookup } from './lookup.js';
import { NetServer } from './net-server.js';
import type { NetConnectOptions, NetContext, NetServerOptions, NetSocketOptions } from './net-socket.js';
import { NetSocket, normalizeConnectArgs } from './net-socket.js';
import type { SocketProvider } from './types.js';

export type { FacadeOptions, LookupFunction } from './lookup.js';
export { NetServer } from './net-server.js';
export type { AddressInfo, NetConnectOptions, NetListenOptions, NetServerOptions, NetSocketOptions } from './net-socket.js';
export { NetSocket } from './net-socket.js';

// -- the façade ---------------------------------------------------------------------------------

type ConnectArgs =
  | [options: NetConnectOptions, connectionListener?: () => void]
  | [port: number | string, host?: string, connectionListener?: () => void]
  | [port: number | string, connectionListener?: () => void];

/** What createNet returns: the shape of node:net over one provider. */
export interface Net {
  readonly provider: SocketProvider;
  readonly Socket: new (options?: NetSocketOptions) => NetSocket;
  readonly Server: new (options?: NetServerOptions | ((socket: NetSocket) => void), connectionListener?: (socket: NetSocket) => void) => NetServer;
  createServer(connectionListener?: (socket: NetSocket) => void): NetServer;
  createServer(options?: NetServerOptions, connectionListener?: (socket: NetSocket) => void): NetServer;
  connect(options: NetConnectOptions, connectionListener?: () => void): NetSocket;
  connect(port: number | string, host?: string, connectionListener?: () => void): NetSocket;
  connect(port: number | string, connectionListener?: () => void): NetSocket;
  createConnection(options: NetConnectOptions, connectionListener?: () => void): NetSocket;
  createConnection(port: number | string, host?: string, connectionListener?: () => void): NetSocket;
  createConnection(port: number | string, connectionListener?: () => void): NetSocket;
  isIP(input: string): number;
  isIPv4(input: string): boolean;
  isIPv6(input: string): boolean;
}

/**
 * A node:net look-alike over `provider`, or over `netstack(stack)`. Neither given is an EINVAL
 * error: hostinet (the host's own sockets) must be asked for by name.
 */
export function createNet(options: FacadeOptions): Net {
  const provider = chooseProvider(options, 'createNet');
  const lookup = defaultLookup(provider);
  const ctx: NetContext = {
    provider,
    lookup,
    Socket: undefined as unknown as NetContext['Socket'],
  };
  class Socket extends NetSocket {
    constructor(options?: NetSocketOptions) {
      super(ctx, options);
    }
  }
  class Server extends NetServer {
    constructor(options?: NetServerOptions | ((socket: NetSocket) => void), connectionListener?: (socket: NetSocket) => void) {
      super(ctx, options, connectionListener);
    }
  }
  (ctx as { Socket: NetContext['Socket'] }).Socket = Socket;
  const connect = (...args: ConnectArgs): NetSocket => {
    const [opts] = normalizeConnectArgs(args);
    const socket = new Socket(typeof args[0] === 'object' ? opts : {});
    return (socket.connect as (...a: unknown[]) => NetSocket)(...args);
  };
  return {
    provider,
    Socket,
    Server,
    createServer: (a?: NetServerOptions | ((socket: NetSocket) => void), b?: (socket: NetSocket) => void) => new Server(a, b),
    connect: connect,
    createConnection: connect,
    isIP,
    isIPv4,
    isIPv6,
  };
}
