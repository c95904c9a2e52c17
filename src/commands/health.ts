import type { Engine } from '../engine/engine.ts';
import type { HealthMonitor, HealthReport, MonitorEvent } from '../engine/monitor.ts';
import type { ObservabilityStats, Store } from '../engine/store.ts';

/**
 * The process's health as the surfaces read it: /healthz and /metrics
 * (src/chat/slack/metrics.ts), the alerts, and the `health` command. The
 * chat layer holds no SQL, so the database figures come through here.
 */
export class Health {
  private readonly engine: Engine;
  private monitor?: HealthMonitor;

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

  /** One pass of the monitor now (recovering what it finds, probing services); undefined without a monitor. */
  async check(): Promise<HealthReport | undefined> {
    return this.monitor?.check();
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
