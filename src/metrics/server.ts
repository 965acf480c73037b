/**
 * The metrics endpoint (`METRICS_PORT`, off by default): `GET /metrics` for Prometheus, `GET /healthz` for a
 * supervisor or a load balancer (200 when every check passes, else 503; a JSON body says which failed). It listens
 * on this machine only unless `METRICS_HOST` says otherwise, and has no authentication: the numbers include server
 * ids, never prompts, member ids or tokens.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../log.js';
import { createBotMetrics, type BotMetricsOptions } from './bot-metrics.js';
import { checkHealth, engineHealthOf, type HealthChecks } from './health.js';

export interface MetricsServerOptions extends Omit<BotMetricsOptions, 'health'> {
  host: string;
  /** 0: any free port (see `url`). */
  port: number;
  /** The checks only the caller can make; the engine's comes from `engine`. */
  checks: Omit<HealthChecks, 'engine'>;
  logger: Logger;
}

export interface MetricsServer {
  /** `http://host:port`, with the port actually bound. */
  readonly url: string;
  close(): Promise<void>;
}

export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const { logger } = options;
  const checks: HealthChecks = { ...options.checks, engine: () => engineHealthOf(options.engine).alive > 0 };
  const metrics = createBotMetrics({ ...options, health: () => checkHealth(checks).checks });
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/healthz') {
      const report = checkHealth(checks);
      response
        .writeHead(report.ok ? 200 : 503, { 'content-type': 'application/json', 'cache-control': 'no-store' })
        .end(request.method === 'HEAD' ? undefined : `${JSON.stringify({ status: report.ok ? 'ok' : 'unavailable', ...report.checks })}\n`);
      return;
    }
    if (path === '/metrics') {
      metrics.scrape().then(
        (text) => {
          response.writeHead(200, { 'content-type': metrics.registry.contentType, 'cache-control': 'no-store' });
          response.end(request.method === 'HEAD' ? undefined : text);
        },
        (error: unknown) => {
          logger.warn('metrics scrape failed', { error });
          response.writeHead(500).end();
        },
      );
      return;
    }
    response.writeHead(404, { 'content-type': 'text/plain' }).end('Not found: try /metrics or /healthz\n');
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port, options.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (error) {
    metrics.close();
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`Cannot serve metrics on ${options.host}:${options.port} (METRICS_HOST, METRICS_PORT): ${reason}`);
  }
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  logger.info('metrics listening', { metrics: `${url}/metrics`, health: `${url}/healthz` });
  let closing: Promise<void> | undefined;
  return {
    url,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        metrics.close();
        server.close(() => resolve());
        server.closeAllConnections();
      })),
  };
}
