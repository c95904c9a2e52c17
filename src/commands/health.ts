import type { Engine } from '../engine/engine.ts';
import type { HealthMonitor, HealthReport, MonitorEvent } from '../engine/monitor.ts';
import type { ObservabilityStats, Store } from '../engine/store.ts';

/** On-demand health passes: at most one per this interval in a process. */
export const HEALTH_CHECK_INTERVAL_MS = 10_000;

/**
 * The process's health as the surfaces read it: /healthz and /metrics
 * (src/chat/slack/metrics.ts), the alerts, and the `health` command. The
 * chat layer holds no SQL, so the database figures come through here.
 */
export class Health {
  private readonly engine: Engine;
  private monitor?: HealthMonitor;
  private readonly checkIntervalMs: number;
  private readonly now: () => number;
  private checking: Promise<HealthReport> | undefined;
  private lastCheckAt = Number.NEGATIVE_INFINITY;

  constructor(engine: Engine, monitor?: HealthMonitor, options: { checkIntervalMs?: number; now?: () => number } = {}) {
    this.engine = engine;
    this.monitor = monitor;
    this.checkIntervalMs = options.checkIntervalMs ?? HEALTH_CHECK_INTERVAL_MS;
    this.now = options.now ?? Date.now;
  }

  /** The process's health monitor: `health` runs a pass on it, surfaces follow its events. */
  setMonitor(monitor: HealthMonitor): void {
    this.monitor = monitor;
  }

  /**
   * Follows the monitor's events (recovered runs, stuck runs, services down
   * and up). Only the active monitor emits, so each is heard once across
   * instances. Returns the unsubscribe.
   */
  onMonitorEvent(listener: (event: MonitorEvent) => void): () => void {
    const monitor = this.monitor;
    if (!monitor) return () => {};
    monitor.on('event', listener);
    return () => monitor.off('event', listener);
  }

  /** The monitor's latest findings, without a pass (/healthz, /metrics); undefined without a monitor. */
  monitorReport(): HealthReport | undefined {
    return this.monitor?.report();
  }

  /**
   * The `health` command: one pass of the monitor now (recovering what it
   * finds, probing services); undefined without a monitor. Any chat user may
   * ask and a pass costs queries and a probe of every service, so this
   * process starts one at most every checkIntervalMs: a request meanwhile
   * shares the pass in flight, or gets the findings of the last one (their
   * time is in the report).
   */
  async check(): Promise<HealthReport | undefined> {
    const monitor = this.monitor;
    if (!monitor) return undefined;
    if (this.checking) return this.checking;
    if (this.now() - this.lastCheckAt < this.checkIntervalMs) return monitor.report();
    this.lastCheckAt = this.now();
    this.checking = monitor.check().finally(() => (this.checking = undefined));
    return this.checking;
  }

  private figures: Pick<Store, 'ping' | 'observabilityStats'> | undefined;

  /**
   * Reads /healthz and /metrics through `store`, on a pool of their own
   * (src/app.ts), so scrapes never take the connections commands need.
   * Without it they share the engine's.
   */
  readFiguresFrom(store: Pick<Store, 'ping' | 'observabilityStats'>): void {
    this.figures = store;
  }

  /** /healthz: does the database answer? */
  ping(): Promise<void> {
    return (this.figures ?? this.engine.store).ping();
  }

  /**
   * /metrics: runs and interactions by status, lock waits, and the runs that
   * ended since `endedSince` (see src/db/queries/stats.ts).
   */
  observabilityStats(endedSince: Date | null): Promise<ObservabilityStats> {
    return (this.figures ?? this.engine.store).observabilityStats(endedSince);
  }
}
