import { EventEmitter } from 'node:events';
import type { Kysely } from 'kysely';
import type pg from 'pg';
import type { Logger } from 'pino';
import { createClient } from '../db/connect.ts';
import { claimHealthPass, healthChecks, recordHealthFindings } from '../db/queries/health-checks.ts';
import { advisoryUnlock, tryAdvisoryLock } from '../db/queries/locks.ts';
import * as monitor from '../db/queries/monitor.ts';
import { releaseLostClaims, runsWithOrphanedClaims } from '../db/queries/release-claims.ts';
import type { EngineTables } from '../db/schema.ts';
import type { ExternalService, ResolvedWorkflow } from '../workflows/define.ts';
import { pendingQueries, recoverRun } from './recovery.ts';
import type { Retention } from './retention.ts';

// The health monitor. Every serving instance runs one; one
// at a time is active, the one holding a session advisory lock on its own
// connection. When that instance dies its connection ends, the lock is free,
// and another instance takes it at its next tick.
//
// Each tick the active monitor
//   - recovers runs whose heartbeat is stale and whose lock is free (marked
//     abandoned, their claims released and what those held left as pending
//     interactions: recoverRun, guarded by `status = 'running'`, so a run that
//     just ended is never touched); a stale heartbeat with the lock still held
//     is reported as stuck, not recovered;
//   - releases orphaned claims: claims of runs that have ended (every way a
//     run ends releases its claims, so there should be none; one left behind
//     would keep its subjects from every other run for good);
//   - probes the external services the workflows declare, emitting an event
//     when one goes down and when it comes back, on changes only.
// A standby instance only probes: its /healthz and /metrics then say the same
// about services, and it knows each service's state when it takes over, so a
// service already announced down is not announced again.
//
// Events ('event', MonitorEvent) come from the active monitor only, so a
// surface that posts them (Slack, the console) posts each once.

export interface MonitorOptions {
  db: Kysely<EngineTables>;
  /** A direct connection (never a transaction-pooling proxy): it holds session advisory locks. */
  lockConnectionString: string;
  instanceId: string;
  workflows: ResolvedWorkflow[];
  log: Logger;
  /** HEALTH_INTERVAL_MS. */
  intervalMs: number;
  /** WORKFLOW_HEARTBEAT_MS; a run silent for staleAfterMs (default 3 heartbeats) is a candidate for recovery. */
  heartbeatMs: number;
  staleAfterMs?: number;
  /** Per probe. Default 5 s (at most half the interval). */
  probeTimeoutMs?: number;
  /** Retention (src/engine/retention.ts): the active monitor starts a pass at each tick, in the background. */
  retention?: Retention;
  /** For tests: called between the scan for stale runs and their recovery. */
  beforeRecover?: (candidates: monitor.StaleRun[]) => Promise<void> | void;
}

export interface RecoveredRun {
  runId: number;
  workflowId: number;
  /** What its claims held, left as pending interactions. */
  interactionsReleased: number;
  silentSeconds: number;
  ownerInstance: string | null;
}

export interface StuckRun {
  runId: number;
  workflowId: number;
  silentSeconds: number;
  ownerInstance: string | null;
}

export interface ServiceHealth {
  name: string;
  /** Workflows that declare it. */
  workflows: number[];
  /** null until probed. */
  up: boolean | null;
  /** When it entered its current state (as this instance saw it). */
  since: string | null;
  checkedAt: string | null;
  latencyMs: number | null;
  error: string | null;
}

export interface HealthReport {
  instanceId: string;
  /** Whether this instance holds the monitor lock. */
  active: boolean;
  /** The instance holding the monitor lock (from pg_locks), if any. */
  activeInstance: string | null;
  intervalMs: number;
  staleAfterMs: number;
  /** The last full pass (recovery and probes) made by this instance, or by `lastPassBy`. */
  lastPassAt: string | null;
  /** Set when the findings are another instance's: the latest pass on the database, which it made. */
  lastPassBy?: string;
  /** What that pass fixed or found. */
  recovered: RecoveredRun[];
  stuck: StuckRun[];
  /** Claims of ended runs released, and what they held left as pending interactions. */
  orphans: OrphanedClaims[];
  services: ServiceHealth[];
  /** Since this process started. */
  totals: { passes: number; runsRecovered: number; orphanedClaims: number; interactionsPending: number };
  /** The last pass's error, if it failed. */
  error: string | null;
}

/** A `health` request refused a pass of its own: the latest findings are answered instead. */
export interface HealthLimit {
  /** When the last pass on demand started on this database, and where. */
  lastStartAt: string;
  lastStartBy: string | null;
  nextAllowedAt: string;
}

export type MonitorEvent =
  | { type: 'recovered'; at: string; runs: RecoveredRun[]; orphans: OrphanedClaims[] }
  | { type: 'stuck'; at: string; run: StuckRun }
  | { type: 'service_down'; at: string; service: string; workflows: number[]; error: string }
  | { type: 'service_up'; at: string; service: string; workflows: number[]; downSeconds: number | null };

export interface OrphanedClaims {
  runId: number;
  workflowId: number;
  /** The run's status: it has ended. */
  status: string;
  claims: number;
  /** Interactions left pending from them. */
  interactionsReleased: number;
}

/** What a pass recorded in health_checks for other processes to show. */
type RecordedFindings = Pick<HealthReport, 'recovered' | 'stuck' | 'orphans' | 'error' | 'services'>;

interface TrackedService {
  service: ExternalService;
  state: ServiceHealth;
}

const APP_PREFIX = 'workflow-monitor:';
/** At most this many orphaned-claim findings are kept in a report. */
const REPORT_ITEMS = 20;

export class HealthMonitor extends EventEmitter {
  private client: pg.Client | null = null;
  private active = false;
  private closed = false;
  private timer: NodeJS.Timeout | null = null;
  private chain: Promise<unknown> = Promise.resolve();
  private readonly services = new Map<string, TrackedService>();
  private readonly staleAfterMs: number;
  private readonly probeTimeoutMs: number;
  private lastPassAt: Date | null = null;
  private last: Pick<HealthReport, 'recovered' | 'stuck' | 'orphans' | 'error'> = {
    recovered: [],
    stuck: [],
    orphans: [],
    error: null,
  };
  private readonly totals = { passes: 0, runsRecovered: 0, orphanedClaims: 0, interactionsPending: 0 };
  /** Stuck runs already announced: a stuck run is announced once, not every interval. */
  private readonly stuckSeen = new Set<number>();
  private readonly options: MonitorOptions;

  constructor(options: MonitorOptions) {
    super();
    this.options = options;
    this.staleAfterMs = options.staleAfterMs ?? 3 * options.heartbeatMs;
    this.probeTimeoutMs = options.probeTimeoutMs ?? Math.max(100, Math.min(5_000, Math.floor(options.intervalMs / 2)));
    for (const workflow of options.workflows) {
      for (const service of workflow.services) {
        const tracked = this.services.get(service.name);
        if (tracked) {
          tracked.state.workflows.push(workflow.id);
          continue;
        }
        this.services.set(service.name, {
          service,
          state: { name: service.name, workflows: [workflow.id], up: null, since: null, checkedAt: null, latencyMs: null, error: null },
        });
      }
    }
  }

  get isActive(): boolean {
    return this.active;
  }

  /** Ticks every intervalMs from now (the first at once) until close(). */
  start(): void {
    if (this.timer || this.closed) return;
    const loop = async () => {
      await this.runOnce().catch((error: unknown) => this.options.log.warn({ err: error }, 'health monitor tick failed'));
      if (!this.closed) {
        this.timer = setTimeout(() => void loop(), this.options.intervalMs);
        this.timer.unref();
      }
    };
    this.timer = setTimeout(() => void loop(), 0);
    this.timer.unref();
  }

  /**
   * One tick: take the monitor lock if it is free; the active monitor makes a
   * full pass (recovery, orphans, probes) and emits events, a standby only
   * probes. Ticks and on-demand passes never overlap.
   */
  runOnce(): Promise<HealthReport> {
    return this.serialised(async () => {
      await this.ensureActive();
      if (this.active) {
        await this.pass();
        this.options.retention?.tick(() => this.closed || !this.active);
      } else await this.probeAll();
      return this.reportNow();
    });
  }

  /**
   * `workflow health`: a full pass now whether or not this instance is the
   * active monitor (recovery is safe from anywhere: run locks and status
   * guards decide), then the findings. Events only if this one is active.
   */
  check(): Promise<HealthReport> {
    return this.serialised(async () => {
      await this.pass();
      return this.reportNow();
    });
  }

  /**
   * `health` from any surface: a full pass now (as check) unless one started
   * on this database less than `minIntervalMs` ago, in whichever process; one
   * UPDATE of health_checks decides. Refused, the latest findings on the
   * database (this process's, or those another one recorded), and when the
   * next pass is allowed.
   */
  async checkAtMostEvery(minIntervalMs: number): Promise<{ report: HealthReport; limited?: HealthLimit }> {
    if (await claimHealthPass(this.options.db, minIntervalMs, this.options.instanceId)) return { report: await this.check() };
    const row = await healthChecks(this.options.db);
    // Only the owner can remove the row; without it there is no limit to apply, and no pass is made unlimited.
    if (!row?.started_at) throw new Error('health_checks has no row (migrations/0033_health_checks.ts inserts it): no health pass without its limit');
    const report = await this.reportNow();
    const recorded = row.findings as RecordedFindings | null;
    const latest =
      recorded && row.findings_at && (this.lastPassAt === null || row.findings_at.getTime() > this.lastPassAt.getTime())
        ? {
            ...report,
            ...recorded,
            lastPassAt: row.findings_at.toISOString(),
            ...(row.findings_by && row.findings_by !== this.options.instanceId && { lastPassBy: row.findings_by }),
          }
        : report;
    return {
      report: latest,
      limited: {
        lastStartAt: row.started_at.toISOString(),
        lastStartBy: row.started_by,
        nextAllowedAt: new Date(row.started_at.getTime() + minIntervalMs).toISOString(),
      },
    };
  }

  /** The latest findings without a pass (for /healthz and /metrics). */
  report(): HealthReport {
    return this.buildReport(null);
  }

  /** Stops ticking and releases the monitor lock (closing its connection). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.chain.catch(() => {});
    await this.options.retention?.idle();
    await this.dropConnection();
  }

  private serialised<T>(work: () => Promise<T>): Promise<T> {
    const next = this.chain.then(work, work);
    this.chain = next.catch(() => {});
    return next;
  }

  private async reportNow(): Promise<HealthReport> {
    const holder = await monitor.monitorLockHolder(this.options.db).catch(() => null);
    return this.buildReport(holder === null ? null : holder.startsWith(APP_PREFIX) ? holder.slice(APP_PREFIX.length) : holder);
  }

  private buildReport(activeInstance: string | null): HealthReport {
    return {
      instanceId: this.options.instanceId,
      active: this.active,
      activeInstance: activeInstance ?? (this.active ? this.options.instanceId : null),
      intervalMs: this.options.intervalMs,
      staleAfterMs: this.staleAfterMs,
      lastPassAt: this.lastPassAt?.toISOString() ?? null,
      ...this.last,
      services: [...this.services.values()].map((s) => ({ ...s.state, workflows: [...s.state.workflows] })),
      totals: { ...this.totals },
    };
  }

  /** Keeps (or takes) the monitor lock; a lost connection means standby until the lock is ours again. */
  private async ensureActive(): Promise<void> {
    if (this.closed) return;
    try {
      if (!this.client) {
        const client = createClient({ connectionString: this.options.lockConnectionString, applicationName: `${APP_PREFIX}${this.options.instanceId}` });
        const lost = () => {
          if (this.client !== client) return;
          if (this.active) this.options.log.warn('health monitor: lock connection lost; standing by');
          this.client = null;
          this.active = false;
        };
        client.on('error', lost);
        client.on('end', lost);
        await client.connect();
        this.client = client;
      }
      if (this.active) {
        // Still ours while the connection answers (a session lock dies with its session).
        await this.client.query('SELECT 1');
        return;
      }
      this.active = await monitor.tryMonitorLock(this.client);
      if (this.active) this.options.log.info({ instance: this.options.instanceId }, 'health monitor: active');
    } catch (error) {
      this.options.log.warn({ err: error }, 'health monitor: cannot reach the database for its lock');
      await this.dropConnection();
    }
  }

  private async dropConnection(): Promise<void> {
    const client = this.client;
    this.client = null;
    this.active = false;
    await client?.end().catch(() => {});
  }

  private emitEvent(event: MonitorEvent): void {
    if (!this.active) return;
    this.emit('event', event);
  }

  /** A full pass; its findings replace the last ones. A database error is kept as the pass's error. */
  private async pass(): Promise<void> {
    const at = new Date();
    const recovered: RecoveredRun[] = [];
    const stuck: StuckRun[] = [];
    let orphans: OrphanedClaims[] = [];
    let error: string | null = null;
    try {
      await this.recoverStaleRuns(recovered, stuck);
      orphans = await this.releaseOrphanedClaims();
    } catch (e) {
      error = (e as Error).message;
      this.options.log.warn({ err: e }, 'health monitor pass failed');
    }
    await this.probeAll();

    this.lastPassAt = at;
    this.last = { recovered, stuck, orphans: orphans.slice(0, REPORT_ITEMS), error };
    this.totals.passes++;
    this.totals.runsRecovered += recovered.length;
    for (const orphan of orphans) {
      this.totals.orphanedClaims += orphan.claims;
      this.totals.interactionsPending += orphan.interactionsReleased;
    }
    for (const run of recovered) this.totals.interactionsPending += run.interactionsReleased;
    if (recovered.length || orphans.length) {
      this.options.log.warn({ runs: recovered.map((r) => r.runId), orphans }, 'health monitor recovered work');
      this.emitEvent({ type: 'recovered', at: at.toISOString(), runs: recovered, orphans });
    }
    for (const run of stuck) {
      if (this.stuckSeen.has(run.runId)) continue;
      this.stuckSeen.add(run.runId);
      this.emitEvent({ type: 'stuck', at: at.toISOString(), run });
    }
    const stuckIds = new Set(stuck.map((r) => r.runId));
    for (const id of this.stuckSeen) if (!stuckIds.has(id)) this.stuckSeen.delete(id);
    // After the events: a database that does not answer delays no alert.
    const recorded: RecordedFindings = { ...this.last, services: this.buildReport(null).services };
    await recordHealthFindings(this.options.db, at, this.options.instanceId, recorded).catch((e: unknown) =>
      this.options.log.warn({ err: e }, 'health monitor: cannot record its findings for other processes'),
    );
  }

  /**
   * Runs silent for staleAfterMs: a free lock means no owner (an owner holds
   * it from before its run row exists until after the run has ended), so the
   * run is recovered; a held lock means a live but silent owner: stuck.
   * The run lock is tried on the monitor's own session, and released at once.
   */
  private async recoverStaleRuns(recovered: RecoveredRun[], stuck: StuckRun[]): Promise<void> {
    const candidates = await monitor.staleRunningRuns(this.options.db, this.staleAfterMs);
    if (candidates.length === 0) return;
    await this.options.beforeRecover?.(candidates);
    const client = createClient({ connectionString: this.options.lockConnectionString, applicationName: `${APP_PREFIX}${this.options.instanceId}:check` });
    client.on('error', () => {});
    await client.connect();
    try {
      for (const run of candidates) {
        const facts = { runId: run.id, workflowId: run.workflow_id, silentSeconds: Math.round(run.silent_seconds), ownerInstance: run.owner_instance };
        if (!(await tryAdvisoryLock(client, run.lock_key))) {
          stuck.push(facts);
          continue;
        }
        try {
          const ended = await recoverRun(this.options.db, run.id, 'owner_lost', { workflows: this.lookup });
          if (ended) recovered.push({ ...facts, interactionsReleased: ended.interactionsReleased });
        } finally {
          await advisoryUnlock(client, run.lock_key);
        }
      }
    } finally {
      await client.end().catch(() => {});
    }
  }

  private readonly lookup = (id: number) => this.options.workflows.find((w) => w.id === id);

  /**
   * Claims of ended runs. A run that has ended writes nothing more (its
   * fenced statements match nothing), so its claims are released at once,
   * what they held left pending as for a lost run.
   */
  private async releaseOrphanedClaims(): Promise<OrphanedClaims[]> {
    const orphans: OrphanedClaims[] = [];
    for (const run of await runsWithOrphanedClaims(this.options.db)) {
      const released = await this.options.db.transaction().execute((tx) => releaseLostClaims(tx, run.run_id, pendingQueries(this.options.db, this.lookup)));
      if (released.claims === 0) continue;
      orphans.push({ runId: run.run_id, workflowId: run.workflow_id, status: run.status, claims: released.claims, interactionsReleased: released.pending });
    }
    return orphans;
  }

  /** Probes every service at once; a change of state emits (from the active monitor). */
  private async probeAll(): Promise<void> {
    await Promise.all([...this.services.values()].map((tracked) => this.probe(tracked)));
  }

  private async probe(tracked: TrackedService): Promise<void> {
    const started = performance.now();
    const signal = AbortSignal.timeout(this.probeTimeoutMs);
    let error: string | null = null;
    try {
      // A probe that ignores its signal is still cut off at the timeout.
      await Promise.race([
        tracked.service.probe(signal),
        new Promise<never>((_, reject) =>
          signal.addEventListener('abort', () => reject(new Error(`no answer within ${this.probeTimeoutMs} ms`)), { once: true }),
        ),
      ]);
    } catch (e) {
      error = signal.aborted ? `no answer within ${this.probeTimeoutMs} ms` : describe(e);
    }
    const now = new Date();
    const state = tracked.state;
    const up = error === null;
    const previous = state.up;
    const previousSince = state.since;
    state.checkedAt = now.toISOString();
    state.latencyMs = Math.round(performance.now() - started);
    state.error = error;
    if (previous === up) return;
    state.up = up;
    state.since = now.toISOString();
    if (!up) {
      this.options.log.warn({ service: state.name, error }, 'service down');
      this.emitEvent({ type: 'service_down', at: state.since, service: state.name, workflows: [...state.workflows], error: error! });
    } else if (previous === false) {
      this.options.log.info({ service: state.name }, 'service up again');
      const downSeconds = previousSince ? Math.round((now.getTime() - Date.parse(previousSince)) / 1000) : null;
      this.emitEvent({ type: 'service_up', at: state.since, service: state.name, workflows: [...state.workflows], downSeconds });
    }
  }
}

function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error).slice(0, 300);
  // undici says "fetch failed"; the reason is in its cause.
  const cause = error.cause instanceof Error ? error.cause : undefined;
  const code = cause && 'code' in cause ? ` (${String(cause.code)})` : '';
  return (cause ? `${error.message}: ${cause.message}${code}` : error.message).slice(0, 300);
}
