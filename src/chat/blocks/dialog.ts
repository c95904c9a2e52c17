import type { KnownBlock, ModalView, PlainTextOption } from '@slack/types';
import { formatWork } from '../../commands/format.ts';
import type { WorkflowView } from '../../commands/results.ts';
import { truncate } from '../../lib/truncate.ts';
import { context, plain } from './primitives.ts';

// The run dialog: `/workflow` alone (or `/workflow run`) opens it. What it
// submits is turned back into the words of a typed command (dialogCommand)
// and goes through the same parser, access check and audit.

export const DIALOG_CALLBACK_ID = 'workflow_run_dialog';
/** Block ids of the inputs; response_action: errors names them. */
export const DIALOG_BLOCKS = { workflow: 'workflow', mode: 'mode', target: 'target', force: 'force' } as const;
const VALUE = 'value';
/** Slack's limits for a static select and an option's text. */
const MAX_OPTIONS = 100;
const OPTION_TEXT = 75;

const MODES = [
  { value: 'global_batch', text: 'global_batch: all pending work' },
  { value: 'single_subject', text: 'single_subject: one subject (give its id)' },
  { value: 'single_run', text: 'single_run: resume a run (give its id)' },
] as const;

/** The modal: a workflow picker with each one's pending work, the mode, a subject or run id, and force for admins. */
export function runDialog(workflows: WorkflowView[], options: { admin: boolean; channel?: string }): ModalView {
  const option = (text: string, value: string): PlainTextOption => ({ text: plain(truncate(text, OPTION_TEXT), OPTION_TEXT), value });
  const workflowOptions = workflows.slice(0, MAX_OPTIONS).map((w) => option(`${w.id} ${w.name} · pending: ${formatWork(w.pending, w.steps)}`, String(w.id)));
  const blocks: KnownBlock[] = [
    {
      type: 'input',
      block_id: DIALOG_BLOCKS.workflow,
      label: plain('Workflow', 2_000),
      element: { type: 'static_select', action_id: VALUE, placeholder: plain('Pick a workflow', 150), options: workflowOptions },
    },
    {
      type: 'input',
      block_id: DIALOG_BLOCKS.mode,
      label: plain('Mode', 2_000),
      element: {
        type: 'static_select',
        action_id: VALUE,
        initial_option: option(MODES[0].text, MODES[0].value),
        options: MODES.map((m) => option(m.text, m.value)),
      },
    },
    {
      type: 'input',
      block_id: DIALOG_BLOCKS.target,
      optional: true,
      label: plain('Subject id or run id', 2_000),
      hint: plain('single_subject: the subject to process; single_run: the run to resume. Leave empty for global_batch.', 2_000),
      element: { type: 'plain_text_input', action_id: VALUE, max_length: 20 },
    },
  ];
  if (options.admin) {
    blocks.push({
      type: 'input',
      block_id: DIALOG_BLOCKS.force,
      optional: true,
      label: plain('Force', 2_000),
      element: {
        type: 'checkboxes',
        action_id: VALUE,
        options: [option('Force: take over a running run, bypass the rate limit', 'force')],
      },
    });
  }
  blocks.push(context(['Runs as if typed: `/workflow run …`, with the same access check and audit.']));
  return {
    type: 'modal',
    callback_id: DIALOG_CALLBACK_ID,
    title: plain('Run a workflow', 24),
    submit: plain('Run', 24),
    close: plain('Cancel', 24),
    private_metadata: JSON.stringify({ channel: options.channel ?? null }),
    blocks,
  };
}

/** What a view_submission's state holds, as far as the dialog reads it. */
export type DialogValues = Record<
  string,
  Record<string, { selected_option?: { value?: string } | null; value?: string | null; selected_options?: { value?: string }[] } | undefined> | undefined
>;

/**
 * The submitted dialog as the words of a typed command, or the errors to show
 * in it by block id (response_action: errors). The words go through the
 * grammar like anything typed, so nothing here decides what a run may be.
 */
export function dialogCommand(values: DialogValues): { text: string } | { errors: Record<string, string> } {
  const field = (block: string) => values[block]?.[VALUE];
  const workflow = field(DIALOG_BLOCKS.workflow)?.selected_option?.value ?? '';
  const mode = field(DIALOG_BLOCKS.mode)?.selected_option?.value ?? 'global_batch';
  const target = (field(DIALOG_BLOCKS.target)?.value ?? '').trim();
  const force = (field(DIALOG_BLOCKS.force)?.selected_options ?? []).some((o) => o.value === 'force');
  const errors: Record<string, string> = {};
  if (!/^[1-9][0-9]{0,15}$/.test(workflow)) errors[DIALOG_BLOCKS.workflow] = 'Pick a workflow.';
  if (!MODES.some((m) => m.value === mode)) errors[DIALOG_BLOCKS.mode] = 'Pick a mode.';
  if (mode === 'global_batch' && target !== '')
    errors[DIALOG_BLOCKS.target] = 'global_batch takes no id: leave this empty, or pick single_subject or single_run.';
  if (mode !== 'global_batch' && !/^[1-9][0-9]{0,15}$/.test(target)) {
    errors[DIALOG_BLOCKS.target] =
      mode === 'single_subject'
        ? 'single_subject needs the subject id (a positive whole number).'
        : 'single_run needs the id of the run to resume (a positive whole number).';
  }
  if (Object.keys(errors).length) return { errors };
  const option = mode === 'single_subject' ? ` --subject ${target}` : mode === 'single_run' ? ` --run ${target}` : '';
  return { text: `run ${workflow} --mode ${mode}${option}${force ? ' --force' : ''}` };
}
