// A TCP proxy between a process and PostgreSQL that a test can partition: the
// connections through it to the server are closed (the server ends their
// sessions and releases their locks) while the process's side stays open and
// silent, as when a network drops every packet and no reset arrives; a
// connection made meanwhile is accepted and never answered. heal() closes the
// process's side, as the TCP timeout that ends such a partition would.
import net from 'node:net';

export interface TcpProxy {
  /** `databaseUrl` with its host and port replaced by the proxy's. */
  url(databaseUrl: string): string;
  partition(): void;
  heal(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(databaseUrl: string): Promise<TcpProxy> {
  const target = new URL(databaseUrl);
  let partitioned = false;
  const pairs = new Set<{ down: net.Socket; up: net.Socket | null }>();
  const server = net.createServer((down) => {
    const pair: { down: net.Socket; up: net.Socket | null } = { down, up: null };
    pairs.add(pair);
    down.on('error', () => {});
    down.on('close', () => {
      pairs.delete(pair);
      pair.up?.destroy();
    });
    if (partitioned) return;
    const up = net.connect(Number(target.port || 5432), target.hostname);
    pair.up = up;
    up.on('error', () => {});
    up.on('close', () => {
      if (!partitioned) down.destroy();
    });
    down.pipe(up);
    up.pipe(down);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url(databaseUrl) {
      const url = new URL(databaseUrl);
      url.hostname = '127.0.0.1';
      url.port = String(port);
      return url.toString();
    },
    partition() {
      partitioned = true;
      for (const pair of pairs) {
        pair.down.unpipe();
        pair.up?.unpipe();
        pair.down.pause();
        pair.up?.destroy();
      }
    },
    heal() {
      for (const pair of pairs) pair.down.destroy();
      partitioned = false;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const pair of pairs) pair.down.destroy();
        server.close(() => resolve());
      }),
  };
}
