import { randomBytes } from 'node:crypto';
import os from 'node:os';
import readline from 'node:readline';
import type { Role } from '../commands/access.ts';
import type { CommandResult, RunView } from '../commands/results.ts';
import type { RunViews, RunWatch } from '../commands/run-views.ts';
import type { Actor, ButtonAction, CommandService } from '../commands/service.ts';
import { isActive } from '../db/run-states.ts';
import { showStatusLine, writeAbove } from '../lib/status-line.ts';
import { buttonAction } from './blocks/buttons.ts';
import type { Message } from './blocks/primitives.ts';
import { resultMessage } from './blocks/result.ts';
import { runMessage, runSummaryLine } from './blocks/run.ts';
import { plainText, type Choice } from './plain-text.ts';

// The console chat: with no Slack tokens, `npm start` opens
// this, like Hubot's shell adapter. It shows the Slack messages as text,
// buttons as numbered choices, and the runs of the whole database as they
// start, progress and end, as a channel would.

export interface ConsoleChatOptions {
  service: CommandService;
  views: RunViews;
  input: NodeJS.ReadableStream;
  output: NodeJS.WritableStream;
  /** Default: the local OS user, as an admin (whoever has the terminal owns the database). */
  actor?: Actor;
  prompt?: string;
  /** How often the runs being shown are read for progress. */
  pollMs?: number;
  /** At most one progress line per run this often. */
  progressIntervalMs?: number;
  /** The greeting, in place of the default (serve's start-up banner, so there is one). */
  banner?: string;
}

interface NumberedChoice extends Choice {
  /** The message that carried the button: a force start's click is that message's, once. */
  messageId: string;
}

interface Shown {
  line: string;
  printedAt: number;
}

const KEEP_CHOICES = 200;

export function localActor(): Actor {
  let user: string;
  try {
    user = os.userInfo().username;
  } catch {
    user = process.env.USER ?? 'local'; // no passwd entry (some containers)
  }
  return { id: `console:${user}`, source: 'console', roles: new Set<Role>(['viewer', 'operator', 'admin']) };
}

export class ConsoleChat {
  private readonly service: CommandService;
  private readonly views: RunViews;
  private readonly output: NodeJS.WritableStream;
  private readonly actor: Actor;
  private readonly pollMs: number;
  private readonly progressIntervalMs: number;
  private readonly session = randomBytes(4).toString('hex');
  private rl?: readline.Interface;
  /** On a terminal, while the prompt is up: others' output (log lines) goes above it. */
  private releasePrompt?: () => void;
  private watch?: RunWatch;
  private timer?: NodeJS.Timeout;
  private polling = false;
  /** Lines are handled one at a time, in order: a confirmation must meet the question it answers. */
  private queue: Promise<void> = Promise.resolve();
  private finishedInput?: Promise<void>;
  private closed = false;
  private readonly choices = new Map<number, NumberedChoice>();
  private nextChoice = 1;
  private messages = 0;
  private confirming?: { choice: NumberedChoice; action: ButtonAction };
  /** Runs shown as started and not yet as ended, with the last progress line printed. */
  private readonly live = new Map<number, Shown>();
  private readonly announced = new Set<number>();
  /** Runs shown as ended, with their summary line as shown. */
  private readonly ended = new Map<number, string>();
  private readonly options: ConsoleChatOptions;

  constructor(options: ConsoleChatOptions) {
    this.options = options;
    this.service = options.service;
    this.views = options.views;
    this.output = options.output;
    this.actor = options.actor ?? localActor();
    this.pollMs = options.pollMs ?? 1_000;
    this.progressIntervalMs = options.progressIntervalMs ?? 3_000;
  }

  /** Resolves when the input ends (or on exit/quit/close), after the last line has been handled. */
  async start(): Promise<void> {
    if (this.finishedInput) return this.finishedInput;
    const isTTY = Boolean((this.output as NodeJS.WriteStream).isTTY);
    const rl = readline.createInterface({ input: this.options.input, output: this.output, prompt: this.options.prompt ?? 'workflow> ', terminal: isTTY });
    this.rl = rl;
    const inputEnded = new Promise<void>((resolve) => rl.once('close', resolve));
    // Without a listener, Ctrl-C on a terminal would only pause the input.
    rl.on('SIGINT', () => rl.close());
    rl.on('line', (line) => {
      this.queue = this.queue.then(() => this.onLine(line)).catch((error) => this.print(`error: ${(error as Error).message}`));
    });
    this.finishedInput = (async () => {
      try {
        this.watch = await this.views.watch();
        this.watch.on('run', (type, view) => (type === 'run_started' ? this.announce(view) : this.finish(view)));
        this.watch.on('reconnected', () => void this.catchUp());
        this.timer = setInterval(() => void this.poll(), this.pollMs);
        this.timer.unref();
        if (isTTY) {
          this.releasePrompt = showStatusLine({
            clear: () => {
              readline.clearLine(this.output, 0);
              readline.cursorTo(this.output, 0);
            },
            redraw: () => {
              if (!this.closed) this.rl?.prompt(true);
            },
          });
        }
        this.print(this.options.banner ?? 'workflow console: type /workflow help (or just help). Numbers choose the [n] buttons; exit to quit.');
        rl.prompt();
      } catch (error) {
        this.print(`error: cannot follow runs: ${(error as Error).message}`);
      }
      await inputEnded;
      await this.queue;
      await this.shutDown();
    })();
    return this.finishedInput;
  }

  async close(): Promise<void> {
    this.rl?.close();
    if (this.finishedInput) await this.finishedInput;
    else await this.shutDown();
  }

  /** A message from outside any command (the health monitor's alerts), printed like the rest. */
  showMessage(message: Message): void {
    this.printMessage(message);
  }

  private async shutDown(): Promise<void> {
    this.closed = true;
    this.releasePrompt?.();
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    const watch = this.watch;
    this.watch = undefined;
    await watch?.close().catch(() => {});
  }

  private async onLine(raw: string): Promise<void> {
    const line = raw.trim();
    if (this.confirming) {
      const { choice, action } = this.confirming;
      this.confirming = undefined;
      if (/^y(es)?$/i.test(line)) await this.press(choice, action);
      else this.print('cancelled');
      return this.prompt();
    }
    if (line === '') return this.prompt();
    if (/^(exit|quit)$/i.test(line)) {
      this.rl?.close();
      return;
    }
    try {
      if (/^\d{1,9}$/.test(line)) await this.choose(Number(line));
      else this.show((await this.service.handle(line, this.actor, 'chat')).result);
    } catch (error) {
      // A database hiccup ends one command, not the console.
      this.print(`error: ${(error as Error).message}`);
    }
    this.prompt();
  }

  private async choose(n: number): Promise<void> {
    const choice = this.choices.get(n);
    if (!choice) {
      this.print(this.choices.size ? `no choice [${n}]; choose one of the [n] shown with a message` : 'there is nothing to choose yet; type /workflow help');
      return;
    }
    // The console parses its buttons as Slack does: what Slack would reject, it rejects too.
    const action = buttonAction(choice.actionId, choice.value);
    if (!action) {
      this.print(`choice [${n}] (${choice.label}) is not a button this console knows`);
      return;
    }
    if (choice.confirm) {
      this.confirming = { choice, action };
      this.print(`${choice.confirm.text}\n${choice.confirm.title} [y/N]`);
      return;
    }
    await this.press(choice, action);
  }

  private async press(choice: NumberedChoice, action: ButtonAction): Promise<void> {
    this.show(await this.service.press(action, this.actor, clickKey(action, choice.messageId)));
  }

  private show(result: CommandResult): void {
    if (result.kind === 'run_started') this.announce(result.view);
    else this.printMessage(resultMessage(result));
  }

  /** A run seen starting (here or anywhere on the database): its message once, then progress lines. */
  private announce(view: RunView): void {
    if (this.announced.has(view.id)) return;
    this.announced.add(view.id);
    if (!isActive(view.status)) return this.finish(view);
    this.live.set(view.id, { line: runSummaryLine(view), printedAt: Date.now() });
    this.printMessage(runMessage(view));
  }

  private finish(view: RunView): void {
    if (this.ended.has(view.id)) {
      // Announced again once it changed: a forced-out run now names the run that replaced it.
      const line = runSummaryLine(view);
      if (this.ended.get(view.id) !== line) {
        this.ended.set(view.id, line);
        this.print(line);
      }
      return;
    }
    this.announced.add(view.id);
    this.ended.set(view.id, runSummaryLine(view));
    this.live.delete(view.id);
    this.printMessage(runMessage(view));
  }

  /** Runs that started while the event connection was down are announced late rather than never. */
  private async catchUp(): Promise<void> {
    try {
      const result = await this.service.execute({ verb: 'list' }, this.actor);
      if (result.kind === 'runs') for (const run of result.runs) this.announce(run);
    } catch {
      // The next reconnection tries again.
    }
  }

  /** Progress from the database, as Slack's message updates: only when changed, at most every progressIntervalMs. */
  private async poll(): Promise<void> {
    if (this.polling || this.closed || this.live.size === 0) return;
    this.polling = true;
    try {
      for (const [id, shown] of [...this.live]) {
        const view = await this.views.get(id);
        if (!view) {
          this.live.delete(id);
        } else if (!isActive(view.status)) {
          this.finish(view); // the end event may have been lost; the poll still reports it
        } else {
          const line = runSummaryLine(view);
          const now = Date.now();
          if (line !== shown.line && now - shown.printedAt >= this.progressIntervalMs) {
            this.live.set(id, { line, printedAt: now });
            this.print(line);
          }
        }
      }
    } catch {
      // The next poll tries again; a lost connection must not end the console.
    } finally {
      this.polling = false;
    }
  }

  private printMessage(message: Message): void {
    const messageId = `${this.session}-${++this.messages}`;
    const { text, choices } = plainText(message);
    const lines = [text];
    for (const choice of choices) {
      const n = this.nextChoice++;
      this.choices.set(n, { ...choice, messageId });
      this.choices.delete(n - KEEP_CHOICES);
      lines.push(`  [${n}] ${choice.label}`);
    }
    this.print(lines.join('\n'));
  }

  private print(text: string): void {
    if (this.closed) return;
    try {
      // On a terminal, a message arriving while the user types goes above the line being typed.
      writeAbove(() => this.output.write(`${text}\n`));
    } catch {
      // Output gone: nothing left to tell.
    }
  }

  private prompt(): void {
    if (!this.closed) this.rl?.prompt();
  }
}

/**
 * The click's identity for service.press: pressing Stop or Force on a run
 * acts once however often it is pressed; a force start is once per message
 * that offered it (a later refusal offers a new one).
 */
function clickKey(action: ButtonAction, messageId: string): string {
  switch (action.type) {
    case 'stop':
      return `stop:${action.runId}`;
    case 'force':
      return `force:${action.runId}`;
    case 'force_start':
      return `force_start:${action.workflowId}:${messageId}`;
    case 'force_approve':
    case 'force_reject':
      return `force_request:${action.requestId}:${messageId}`;
  }
}
