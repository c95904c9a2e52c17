import { Cron } from 'croner';

// Cron schedules of workflows (docs/workflows.md, "Schedules"). The patterns
// are croner's (https://croner.56k.guru): five fields, or six with seconds,
// evaluated in an IANA time zone, daylight-saving changes included. A cron
// parser is easy to get subtly wrong (day-of-month OR day-of-week, DST gaps
// and repeats, "L" and "#"); croner is maintained, has no dependencies and is
// tested against those cases.

export interface Schedule {
  cron: string;
  /** IANA time zone ("Europe/Paris"); UTC when absent. */
  timezone?: string | undefined;
}

function cronOf(schedule: Schedule): Cron {
  return new Cron(schedule.cron, { timezone: schedule.timezone ?? 'UTC', paused: true });
}

/** Why a schedule cannot be used, or undefined when it can. */
export function scheduleProblem(schedule: Schedule): string | undefined {
  try {
    if (schedule.timezone !== undefined) new Intl.DateTimeFormat('en-US', { timeZone: schedule.timezone });
  } catch {
    return `unknown time zone "${schedule.timezone}" (an IANA name such as Europe/Paris)`;
  }
  try {
    const next = cronOf(schedule).nextRun(new Date());
    if (!next) return `cron "${schedule.cron}" never fires`;
  } catch (error) {
    return `invalid cron "${schedule.cron}": ${(error as Error).message}`;
  }
  return undefined;
}

/** The first tick strictly after `after`; null when there is none. */
export function nextTick(schedule: Schedule, after: Date): Date | null {
  return cronOf(schedule).nextRun(after);
}

/**
 * The ticks after `after` up to and including `now`: how many there were
 * (counted up to `cap`) and the latest. Missed ticks fold into one start.
 */
export function dueTicks(schedule: Schedule, after: Date, now: Date, cap = 10_000): { count: number; latest: Date } | null {
  const cron = cronOf(schedule);
  let tick = cron.nextRun(after);
  if (!tick || tick.getTime() > now.getTime()) return null;
  let count = 1;
  for (;;) {
    const next = cron.nextRun(tick);
    if (!next || next.getTime() > now.getTime()) return { count, latest: tick };
    tick = next;
    if (++count >= cap) {
      // A schedule missed for a very long time: the latest tick without walking to it.
      const previous = cron.previousRuns(1, now)[0];
      return { count, latest: previous ?? tick };
    }
  }
}
