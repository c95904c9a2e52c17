import type { Button, ConfirmationDialog, SectionBlock } from '@slack/types';
import type { ForceRequestView, RunView } from '../../commands/results.ts';
import { person } from '../../lib/person.ts';
import type { ButtonAction } from '../../commands/service.ts';
import { SLACK_LIMITS as L } from '../block-limits.ts';
import { mrkdwn, plain } from './primitives.ts';
import { progressLabel, runLine } from './run-lines.ts';

// The button protocol: each button's action id and value are written here
// and read back here (buttonAction), so what a click asks for is checked
// against exactly what was put on the button.

export const ACTION_IDS = {
  stop: 'workflow_stop',
  force: 'workflow_force',
  forceStart: 'workflow_force_start',
  forceApprove: 'workflow_force_approve',
  forceReject: 'workflow_force_reject',
} as const;

/** A button's value parsed back into what it asks for; undefined for anything that is not exactly what we put there. */
export function buttonAction(actionId: string, value: string): ButtonAction | undefined {
  if (typeof value !== 'string' || value.length > L.buttonValue) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined;
  const entries = Object.entries(parsed);
  const only = (key: string): number | undefined => {
    if (entries.length !== 1 || entries[0]![0] !== key) return undefined;
    const id = entries[0]![1];
    return typeof id === 'number' && Number.isSafeInteger(id) && id > 0 ? id : undefined;
  };
  switch (actionId) {
    case ACTION_IDS.stop: {
      const runId = only('runId');
      return runId === undefined ? undefined : { type: 'stop', runId };
    }
    case ACTION_IDS.force: {
      const runId = only('runId');
      return runId === undefined ? undefined : { type: 'force', runId };
    }
    case ACTION_IDS.forceStart: {
      const workflowId = only('workflowId');
      return workflowId === undefined ? undefined : { type: 'force_start', workflowId };
    }
    case ACTION_IDS.forceApprove: {
      const requestId = only('requestId');
      return requestId === undefined ? undefined : { type: 'force_approve', requestId };
    }
    case ACTION_IDS.forceReject: {
      const requestId = only('requestId');
      return requestId === undefined ? undefined : { type: 'force_reject', requestId };
    }
    default:
      return undefined;
  }
}

/**
 * The run and workflow a button value names, read leniently, for the audit
 * entry of one buttonAction refused (an extra key, an edited value): what it
 * aimed at is worth recording even when it is not acted on.
 */
export function namedTargets(value: string): { runId?: number; workflowId?: number } {
  let parsed: unknown;
  try {
    parsed = value.length <= L.buttonValue ? JSON.parse(value) : undefined;
  } catch {
    return {};
  }
  if (typeof parsed !== 'object' || parsed === null) return {};
  const id = (v: unknown) => (typeof v === 'number' && Number.isSafeInteger(v) && v > 0 && v <= 2 ** 31 - 1 ? v : undefined);
  const { runId, workflowId } = parsed as { runId?: unknown; workflowId?: unknown };
  return { ...(id(runId) !== undefined ? { runId: id(runId) } : {}), ...(id(workflowId) !== undefined ? { workflowId: id(workflowId) } : {}) };
}

export function stopButton(run: RunView): Button {
  return {
    type: 'button',
    action_id: ACTION_IDS.stop,
    text: plain(`Stop run #${run.id}`, L.buttonText),
    style: 'danger',
    value: JSON.stringify({ runId: run.id }),
    confirm: confirmDialog(
      `Stop run #${run.id}?`,
      `Run #${run.id} of workflow ${run.workflowId} (started by ${run.requestedBy}) stops: in-flight work is aborted and returns to pending, nothing is lost. Resume it later with: run --mode single_run --run ${run.id}`,
      'Stop',
    ),
  };
}

export function forceButton(running: RunView): Button {
  return {
    type: 'button',
    action_id: ACTION_IDS.force,
    text: plain(`Force restart (stops run #${running.id})`, L.buttonText),
    style: 'danger',
    value: JSON.stringify({ runId: running.id }),
    confirm: confirmDialog(
      `Force restart: stop run #${running.id}?`,
      `This stops run #${running.id} of workflow ${running.workflowId} (started by ${running.requestedBy}; ${progressLabel(running)}) and starts a new run in its place. Its unfinished work returns to pending. Admins only.`,
      'Force restart',
    ),
  };
}

export function forceStartButton(workflowId: number, nextAllowedAt: string | undefined): Button {
  return {
    type: 'button',
    action_id: ACTION_IDS.forceStart,
    text: plain('Force start now (admins)', L.buttonText),
    style: 'danger',
    value: JSON.stringify({ workflowId }),
    confirm: confirmDialog(
      `Force a start of workflow ${workflowId}?`,
      `The rate limit allows the next start${nextAllowedAt ? ` at ${nextAllowedAt}` : ' later'}. Forcing starts a run now, bypassing it. Admins only.`,
      'Force start',
    ),
  };
}

/** A force request's Approve button: a different admin's, before it expires. */
export function approveButton(request: ForceRequestView): Button {
  return {
    type: 'button',
    action_id: ACTION_IDS.forceApprove,
    text: plain(`Approve force #${request.id}`, L.buttonText),
    style: 'danger',
    value: JSON.stringify({ requestId: request.id }),
    confirm: confirmDialog(
      `Approve force request #${request.id}?`,
      `Approving forces workflow ${request.workflowId} now, as requested by ${person(request.requestedBy).name}: a run in progress is stopped and a new run starts in its place. You must be an admin, and not the requester.`,
      'Approve and force',
    ),
  };
}

/** A force request's Reject button: nothing is forced (the requester may withdraw their own). */
export function rejectButton(request: ForceRequestView): Button {
  return {
    type: 'button',
    action_id: ACTION_IDS.forceReject,
    text: plain(`Reject #${request.id}`, L.buttonText),
    value: JSON.stringify({ requestId: request.id }),
    confirm: {
      ...confirmDialog(`Reject force request #${request.id}?`, `Nothing is forced; the request is closed. Admins only.`, 'Reject'),
      style: 'primary',
    },
  };
}

/** A run as one section with its Stop button beside it (one button per block keeps action ids fixed). */
export function runWithStop(run: RunView, now: Date): SectionBlock {
  return { type: 'section', text: mrkdwn(runLine(run, now)), accessory: stopButton(run) };
}

function confirmDialog(title: string, text: string, confirm: string): ConfirmationDialog {
  return {
    title: plain(title, L.confirmTitle),
    text: plain(text, L.confirmText),
    confirm: plain(confirm, L.confirmButton),
    deny: plain('Cancel', L.confirmButton),
    style: 'danger',
  };
}
