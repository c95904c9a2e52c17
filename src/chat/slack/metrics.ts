// GET /healthz and GET /metrics for the Slack app's HTTP server (Bolt custom
// routes; in Socket Mode the app still serves them on PORT).
//
// Every figure here comes from the database through the command layer
// (Health.ping / observabilityStats), so each instance serving the same
// database reports the same numbers: aggregate across instances with max(),
// not sum(). The chat layer holds no SQL (src/db/queries/stats.ts has it).
//
// The health monitor's figures (workflow_monitor_*, workflow_service_up) are
// this process's own (Health.monitorReport): services are probed by
// every instance, recovery is done by the active monitor only, so sum() its
// counters across instances.
//
// /healthz and external services: a service a workflow needs (Ollama) being
// down does NOT make /healthz 503. The answer stays 200 with
// {"status":"degraded"} (and, for METRICS_TOKEN's bearer only, the reason
// and the services: /healthz answers anyone who can reach PORT): every
// instance shares that service, so a load balancer or orchestrator acting on
// a 503 would take every instance out (or restart them all) and Slack would
// lose /workflow list and stop exactly when operators need them, without
// bringing the service back. 503 stays for what is this instance's own:
// its database unreachable, its runner not alive.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CustomRoute } from '@slack/bolt';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Health } from '../../commands/health.ts';
import { RUN_STATUSES } from '../../db/run-states.ts';

type HealthReads = Pick<Health, 'ping' | 'observabilityStats'> & Partial<Pick<Health, 'monitorReport'>>;

export type HealthAnswer =
  | { ok: true; degraded?: string; monitor?: MonitorSummary; services?: Record<string, 'up' | 'down' | 'unknown'> }
  | { ok: false; reason: string };

interface MonitorSummary {
  active: boolean;
  activeInstance: string | null;
  lastPassAt: string | null;
}

export interface ObservabilityOptions {
  health: HealthReads;
  /** Is the runner alive? (The serving loop: dispatcher, run events.) Absent = only the database is checked. */
  engineAlive?: () => boolean;
  /** How long /healthz waits for the database before calling it unreachable. Default 2 s. */
  healthTimeoutMs?: number;
  /** Process metrics (CPU, memory, event-loop lag, GC) from prom-client. Default true. */
  processMetrics?: boolean;
  /**
   * METRICS_TOKEN: when set, /metrics answers only `Authorization: Bearer
   * <token>` (401 otherwise), and /healthz adds its details for it.
   */
  metricsToken?: string;
}

export interface Observability {
  healthRoute: CustomRoute;
  metricsRoute: CustomRoute;
  routes: CustomRoute[];
  /** The app's own Prometheus registry (never prom-client's global one). */
  registry: Registry;
  /** 'ok' (perhaps degraded: an external service down), or why not (the /healthz answer). */
  health(): Promise<HealthAnswer>;
  /** The /metrics body, after refreshing the database figures. */
  metrics(): Promise<string>;
}

const INTERACTION_STATUSES = ['pending', 'running', 'completed', 'failed'] as const;
/** Run durations range from a no-op second to hours of model calls. */
const DURATION_BUCKETS = [0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200, 21600];

export function createObservability(options: ObservabilityOptions): Observability {
  const reads = options.health;
  const healthTimeoutMs = options.healthTimeoutMs ?? 2_000;
  const registry = new Registry();
  if (options.processMetrics ?? true) collectDefaultMetrics({ register: registry });

  const runs = new Gauge({
    name: 'workflow_runs',
    help: 'Runs recorded in the database, by workflow and status.',
    labelNames: ['workflow_id', 'status'] as const,
    registers: [registry],
  });
  const interactions = new Gauge({
    name: 'workflow_interactions',
    help: 'Interactions (one per run, step and subject) in the database, by workflow, step and status.',
    labelNames: ['workflow_id', 'step', 'status'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'workflow_run_duration_seconds',
    help: 'Wall time of ended runs (started to ended), by workflow and final status. Observed from the database: every ended run, once per process.',
    labelNames: ['workflow_id', 'status'] as const,
    buckets: DURATION_BUCKETS,
    registers: [registry],
  });
  const concurrencyLimit = new Gauge({
    name: 'workflow_concurrency_limit',
    help: "Handler calls a running run lets run at once under concurrency 'auto' (its adaptive limit), by workflow and run, from the run's last heartbeat.",
    labelNames: ['workflow_id', 'run_id'] as const,
    registers: [registry],
  });
  const lockWaits = new Counter({
    name: 'workflow_lock_waits_total',
    help: "Run requests refused because the workflow's advisory lock was held by a running run (reason=duplicate) or was being taken or released (reason=busy); from the audit log.",
    labelNames: ['workflow_id', 'reason'] as const,
    registers: [registry],
  });
  const databaseUp = new Gauge({
    name: 'workflow_database_up',
    help: 'Whether the last scrape could read the database (1) or not (0); the workflow_* figures are absent when 0.',
    registers: [registry],
  });
  const scrapeSeconds = new Gauge({
    name: 'workflow_metrics_query_seconds',
    help: 'How long the last scrape took to read the database figures.',
    registers: [registry],
  });

  const monitorActive = new Gauge({
    name: 'workflow_monitor_active',
    help: 'Whether this instance holds the health monitor lock (1) or stands by (0). Across instances, sum() is 1.',
    registers: [registry],
  });
  const monitorLastPass = new Gauge({
    name: 'workflow_monitor_last_pass_timestamp_seconds',
    help: "Unix time of this instance's last full health monitor pass (recovery and probes); absent before the first.",
    registers: [registry],
  });
  const serviceUp = new Gauge({
    name: 'workflow_service_up',
    help: 'Whether an external service a workflow declares answered its last probe (1) or not (0); absent before the first probe.',
    labelNames: ['service'] as const,
    registers: [registry],
  });
  const runsRecovered = new Counter({
    name: 'workflow_monitor_runs_recovered_total',
    help: 'Runs this process marked abandoned (heartbeat stale, lock free) in health monitor passes.',
    registers: [registry],
  });
  const interactionsReleased = new Counter({
    name: 'workflow_monitor_interactions_released_total',
    help: 'Unfinished interactions this process left pending when it released the claims of lost runs (recovered) and of ended runs (orphaned).',
    registers: [registry],
  });
  const stuckRuns = new Gauge({
    name: 'workflow_monitor_stuck_runs',
    help: "Runs whose heartbeat is stale while their owner still holds the lock, at this instance's last pass.",
    registers: [registry],
  });

  function refreshMonitor(): void {
    const report = reads.monitorReport?.();
    if (!report) return;
    monitorActive.set(report.active ? 1 : 0);
    if (report.lastPassAt) monitorLastPass.set(Date.parse(report.lastPassAt) / 1000);
    serviceUp.reset();
    for (const s of report.services) if (s.up !== null) serviceUp.set({ service: s.name }, s.up ? 1 : 0);
    runsRecovered.reset();
    runsRecovered.inc(report.totals.runsRecovered);
    interactionsReleased.reset();
    interactionsReleased.inc(report.totals.interactionsPending);
    stuckRuns.set(report.lastPassAt ? report.stuck.length : 0);
  }

  // Ended runs are observed once each: a watermark on ended_at, plus the ids
  // seen inside the overlap window the query looks back over.
  let newestEndedMs: number | null = null;
  const seen = new Map<number, number>();
  const OVERLAP_MS = 5 * 60_000;

  // One refresh at a time: concurrent scrapes share it.
  let refreshing: Promise<void> | null = null;
  const refresh = () => (refreshing ??= refreshOnce().finally(() => (refreshing = null)));

  async function refreshOnce(): Promise<void> {
    const started = performance.now();
    let stats: Awaited<ReturnType<HealthReads['observabilityStats']>>;
    try {
      stats = await withTimeout(reads.observabilityStats(newestEndedMs === null ? null : new Date(newestEndedMs)), healthTimeoutMs * 2, 'reading the figures');
    } catch {
      databaseUp.set(0);
      runs.reset();
      interactions.reset();
      return;
    }
    databaseUp.set(1);

    runs.reset();
    for (const workflowId of new Set(stats.runs.map((r) => r.workflow_id))) {
      for (const status of RUN_STATUSES) runs.set({ workflow_id: String(workflowId), status }, 0);
    }
    for (const r of stats.runs) runs.set({ workflow_id: String(r.workflow_id), status: r.status }, r.count);

    interactions.reset();
    const steps = new Map(stats.interactions.map((i) => [`${i.workflow_id}\u0000${i.step}`, i]));
    for (const i of steps.values()) {
      for (const status of INTERACTION_STATUSES) interactions.set({ workflow_id: String(i.workflow_id), step: i.step, status }, 0);
    }
    for (const i of stats.interactions) interactions.set({ workflow_id: String(i.workflow_id), step: i.step, status: i.status }, i.count);

    // The audit log is append-only, so these totals only grow: a counter.
    lockWaits.reset();
    for (const w of stats.lockWaits) lockWaits.inc({ workflow_id: String(w.workflow_id), reason: w.reason }, w.count);

    concurrencyLimit.reset();
    for (const l of stats.concurrencyLimits) concurrencyLimit.set({ workflow_id: String(l.workflow_id), run_id: String(l.run_id) }, l.limit);

    for (const e of stats.ended) {
      if (seen.has(e.id)) continue;
      seen.set(e.id, e.ended_at_ms);
      duration.observe({ workflow_id: String(e.workflow_id), status: e.status }, Math.max(0, e.duration_seconds));
      if (newestEndedMs === null || e.ended_at_ms > newestEndedMs) newestEndedMs = e.ended_at_ms;
    }
    if (newestEndedMs !== null) {
      for (const [id, endedMs] of seen) if (endedMs < newestEndedMs - OVERLAP_MS - 60_000) seen.delete(id);
    }
    scrapeSeconds.set((performance.now() - started) / 1000);
  }

  async function health(): Promise<HealthAnswer> {
    try {
      await withTimeout(reads.ping(), healthTimeoutMs, 'SELECT 1');
    } catch (error) {
      return { ok: false, reason: `database unreachable: ${describe(error)}` };
    }
    if (options.engineAlive && !options.engineAlive()) return { ok: false, reason: 'runner not alive' };
    const report = reads.monitorReport?.();
    if (!report) return { ok: true };
    const services = Object.fromEntries(report.services.map((s) => [s.name, s.up === null ? 'unknown' : s.up ? 'up' : 'down'] as const));
    const down = report.services.filter((s) => s.up === false);
    const degraded = down.length ? down.map((s) => `${s.name} down: ${s.error ?? 'no answer'}`).join('; ') : undefined;
    return {
      ok: true,
      ...(degraded ? { degraded } : {}),
      monitor: { active: report.active, activeInstance: report.activeInstance, lastPassAt: report.lastPassAt },
      services,
    };
  }

  async function metrics(): Promise<string> {
    refreshMonitor();
    await refresh();
    return registry.metrics();
  }

  const authorized = bearerCheck(options.metricsToken);

  // Anyone who can reach PORT can ask /healthz, so it says the status and, when
  // unavailable, which of its two causes; the details (which service is down
  // and why, the monitor's instance, the error) only to METRICS_TOKEN's bearer.
  const healthRoute: CustomRoute = {
    path: '/healthz',
    method: ['GET'],
    handler: (req, res) => {
      const detailed = options.metricsToken !== undefined && authorized(req);
      void health().then(
        (result) =>
          result.ok
            ? json(res, 200, {
                status: result.degraded ? 'degraded' : 'ok',
                ...(detailed && result.degraded ? { reason: result.degraded } : {}),
                ...(detailed && result.monitor ? { monitor: result.monitor, services: result.services } : {}),
              })
            : json(res, 503, { status: 'unavailable', reason: detailed ? result.reason : result.reason.replace(/:.*$/s, '') }),
        (error: unknown) => json(res, 503, { status: 'unavailable', ...(detailed ? { reason: describe(error) } : {}) }),
      );
    },
  };

  const metricsRoute: CustomRoute = {
    path: '/metrics',
    method: ['GET'],
    handler: (req, res) => {
      if (!authorized(req)) {
        res.writeHead(401, { 'content-type': 'text/plain; charset=utf-8', 'www-authenticate': 'Bearer realm="metrics"', 'cache-control': 'no-store' });
        res.end('# /metrics needs Authorization: Bearer <METRICS_TOKEN>\n');
        return;
      }
      void metrics().then(
        (body) => {
          res.writeHead(200, { 'content-type': registry.contentType, 'cache-control': 'no-store' });
          res.end(body);
        },
        (error: unknown) => {
          res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
          res.end(`# metrics failed: ${describe(error)}\n`);
        },
      );
    },
  };

  return { healthRoute, metricsRoute, routes: [healthRoute, metricsRoute], registry, health, metrics };
}

/**
 * Whether a request carries `Authorization: Bearer <token>`; every request
 * does when there is no token. Compared as SHA-256 digests with
 * timingSafeEqual: equal lengths, and no early exit on the first wrong byte.
 */
function bearerCheck(token: string | undefined): (req: IncomingMessage) => boolean {
  if (token === undefined) return () => true;
  const expected = createHash('sha256').update(token).digest();
  return (req) => {
    const header = req.headers.authorization;
    const given = typeof header === 'string' && /^Bearer /i.test(header) ? header.slice(7).trim() : '';
    return timingSafeEqual(createHash('sha256').update(given).digest(), expected);
  };
}

function json(res: ServerResponse, status: number, body: object): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

function describe(error: unknown): string {
  if (error instanceof AggregateError && error.errors.length > 0) return describe(error.errors[0]);
  if (error instanceof Error) {
    const code = (error as { code?: string }).code;
    // Never a connection string: pg's messages name the host and port at most.
    return (error.message || code || error.name).slice(0, 300);
  }
  return String(error).slice(0, 300);
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
