import type { Engine } from '../engine/engine.ts';
import type { HealthLimit, HealthMonitor, HealthReport, MonitorEvent } from '../engine/monitor.ts';
import type { ObservabilityStats, Store } from '../engine/store.ts';

/** On-demand health passes: at most one per this interval on a database, whichever process is asked. */
export const HEALTH_CHECK_INTERVAL_MS = 10_000;

/**
 * The process's health as the surfaces read it: /healthz and /metrics
 * (src/chat/slack/metrics.ts), the alerts, and the `health` command. The
 * chat layer holds no SQL, so the database figures come through here.
 */
export class Health {
  private readonly engine: Engine;
  private monitor?: HealthMonitor;
  private checking: Promise<{ report: HealthReport; limited?: HealthLimit }> | undefined;

  constructor(engine: Engine, monitor?: HealthMonitor) {
    this.engine = engine;
    this.monitor = monitor;
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
   * ask, every CLI call is a process of its own, and a pass costs queries and
   * a probe of every service, so one starts at most every
   * HEALTH_CHECK_INTERVAL_MS on the database, whichever process is asked
   * (HealthMonitor.checkAtMostEvery). A request meanwhile shares the one in
   * flight in this process, or is refused one of its own and gets the latest
   * findings (their time is in the report) and when the next is allowed.
   */
  check(): Promise<{ report: HealthReport; limited?: HealthLimit }> | undefined {
    const monitor = this.monitor;
    if (!monitor) return undefined;
    this.checking ??= monitor.checkAtMostEvery(HEALTH_CHECK_INTERVAL_MS).finally(() => (this.checking = undefined));
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
