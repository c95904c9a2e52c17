import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MAX_INPUT_LENGTH, parseCommand, usage, type Command, type ParseResult, type Surface } from '../src/commands/grammar.ts';
import { plainHelp } from '../src/commands/verbs.ts';

// Pure unit tests of the command grammar: no database, no I/O.

function parse(input: string | string[], surface: Surface = 'chat'): ParseResult {
  const result = parseCommand(input, { surface });
  if (!result.ok) assertOneLine(result.error);
  return result;
}

function ok(input: string | string[], surface: Surface = 'chat'): Command {
  const result = parse(input, surface);
  if (!result.ok) assert.fail(`expected ${JSON.stringify(input)} to parse, got: ${result.error}`);
  return result.command;
}

function err(input: string | string[], surface: Surface = 'chat'): string {
  const result = parse(input, surface);
  if (result.ok) assert.fail(`expected ${JSON.stringify(input)} to fail, got ${JSON.stringify(result.command)}`);
  assert.ok(result.usage.length > 0, 'an error carries usage');
  return result.error;
}

/** Asserts the error fails and that its message mentions every fragment. */
function rejects(input: string | string[], fragments: string[], surface: Surface = 'chat'): void {
  const error = err(input, surface);
  for (const fragment of fragments)
    assert.ok(error.includes(fragment), `error for ${JSON.stringify(input)} should mention ${JSON.stringify(fragment)}: ${error}`);
}

function assertOneLine(error: string): void {
  assert.equal(typeof error, 'string');
  assert.ok(error.length > 0 && error.length <= 300, `error length ${error.length}: ${error}`);
  assert.ok(!/[\r\n\u0085\u2028\u2029]/.test(error), `error must be one line: ${JSON.stringify(error)}`);
  assert.ok(!error.startsWith('internal parser error'), error);
}

const run = (fields: Partial<Extract<Command, { verb: 'run' }>>): Command => ({
  verb: 'run',
  workflow: '3',
  mode: 'global_batch',
  force: false,
  detach: false,
  ...fields,
});

describe('run', () => {
  test('a workflow by number or by name, names lowercased', () => {
    assert.deepEqual(ok('run 3'), run({}));
    assert.deepEqual(ok('run enrich-postings'), run({ workflow: 'enrich-postings' }));
    assert.deepEqual(ok('run Enrich-Postings'), run({ workflow: 'enrich-postings' }));
    assert.deepEqual(ok('run a1-b2'), run({ workflow: 'a1-b2' }));
  });

  test('explicit modes', () => {
    assert.deepEqual(ok('run 3 --mode global_batch'), run({}));
    assert.deepEqual(ok('run 3 --mode single_subject --subject 7'), run({ mode: 'single_subject', subjectId: 7 }));
    assert.deepEqual(ok('run 3 --mode single_run --run 12'), run({ mode: 'single_run', runId: 12 }));
    assert.deepEqual(ok('run 3 --mode SINGLE_RUN --run 12'), run({ mode: 'single_run', runId: 12 }));
  });

  test('modes implied by --subject and --run', () => {
    assert.deepEqual(ok('run 3 --subject 7'), run({ mode: 'single_subject', subjectId: 7 }));
    assert.deepEqual(ok('run 3 --run 12'), run({ mode: 'single_run', runId: 12 }));
  });

  test('single_run may leave out the workflow: the service takes it from the run', () => {
    assert.deepEqual(ok('run --mode single_run --run 12'), run({ workflow: undefined, mode: 'single_run', runId: 12 }));
    assert.deepEqual(ok('run --run 12'), run({ workflow: undefined, mode: 'single_run', runId: 12 }));
  });

  test('--force, and options before the positional', () => {
    assert.deepEqual(ok('run 3 --force'), run({ force: true }));
    assert.deepEqual(ok('run --force 3'), run({ force: true }));
    assert.deepEqual(ok('run --subject 7 enrich'), run({ workflow: 'enrich', mode: 'single_subject', subjectId: 7 }));
  });

  test('seed aliases', () => {
    assert.deepEqual(ok('run 3 --mode single_posting --posting-id 5'), run({ mode: 'single_subject', subjectId: 5 }));
    assert.deepEqual(ok('run 3 --posting-id 5'), run({ mode: 'single_subject', subjectId: 5 }));
    assert.deepEqual(ok('run 3 --workflow-run-id 9'), run({ mode: 'single_run', runId: 9 }));
    assert.deepEqual(ok('run --mode single_run --workflow-run-id 9'), run({ workflow: undefined, mode: 'single_run', runId: 9 }));
  });

  test('--flag=value', () => {
    assert.deepEqual(ok('run 3 --mode=single_subject --subject=7'), run({ mode: 'single_subject', subjectId: 7 }));
    assert.deepEqual(ok('run 3 --posting-id=5'), run({ mode: 'single_subject', subjectId: 5 }));
    assert.deepEqual(ok('run --run=12'), run({ workflow: undefined, mode: 'single_run', runId: 12 }));
  });

  test('contradictions', () => {
    rejects('run 3 --mode global_batch --subject 7', ['--subject', 'global_batch']);
    rejects('run 3 --mode global_batch --run 7', ['--run', 'global_batch']);
    rejects('run 3 --mode single_subject', ['single_subject', '--subject']);
    rejects('run 3 --mode single_posting', ['single_subject', '--subject']);
    rejects('run 3 --mode single_run', ['single_run', '--run']);
    rejects('run 3 --mode single_subject --subject 1 --run 2', ['--subject', '--run']);
    rejects('run 3 --subject 1 --run 2', ['--subject', '--run']);
    rejects('run 3 --mode single_run --run 2 --subject 1', ['--subject', '--run']);
    rejects('run 3 --mode single_subject --run 2', ['--run', 'single_subject']);
  });

  test('a workflow is required except to resume a run', () => {
    rejects('run', ['run', '<workflow>']);
    rejects('run --subject 4', ['<workflow>']);
    rejects('run --force', ['<workflow>']);
  });

  test('bad values name the option and the value', () => {
    rejects('run 3 --mode fast', ['--mode', '"fast"', 'global_batch']);
    rejects('run Foo_Bar', ['<workflow>', '"Foo_Bar"']);
    rejects('run 3abc', ['<workflow>', '"3abc"']);
    rejects('run -3', ['<workflow>', '"-3"']);
    rejects('run 0', ['<workflow>', '"0"']);
    rejects('run 3 --posting-id abc', ['--posting-id', '"abc"']);
    rejects('run 3 --subject -5', ['--subject', '"-5"']);
  });
});

describe('force', () => {
  test('is run --force with the same options', () => {
    assert.deepEqual(ok('force 3'), run({ force: true }));
    assert.deepEqual(ok('force my-flow --subject 2'), run({ workflow: 'my-flow', mode: 'single_subject', subjectId: 2, force: true }));
    assert.deepEqual(ok('force --mode single_run --workflow-run-id 8'), run({ workflow: undefined, mode: 'single_run', runId: 8, force: true }));
    assert.deepEqual(ok('force 3 --force'), run({ force: true }), 'redundant, not contradictory');
  });

  test('errors speak of force', () => {
    rejects('force', ['force', '<workflow>']);
    const result = parse('force 3 --bogus');
    assert.equal(result.ok, false);
    if (!result.ok) assert.match(result.usage, /force <workflow>/);
  });
});

describe('list, stop, status, workflows', () => {
  test('list and its seed alias', () => {
    assert.deepEqual(ok('list'), { verb: 'list' });
    assert.deepEqual(ok('--list-running'), { verb: 'list' });
    rejects('list 3', ['unexpected argument', '"3"']);
  });

  test('stop, with the seed spelling', () => {
    assert.deepEqual(ok('stop 42'), { verb: 'stop', runId: 42 });
    assert.deepEqual(ok('--stop --workflow-run-id 42'), { verb: 'stop', runId: 42 });
    assert.deepEqual(ok('--stop --workflow-run-id=42'), { verb: 'stop', runId: 42 });
    assert.deepEqual(ok('stop --workflow-run-id 42'), { verb: 'stop', runId: 42 });
    rejects('stop', ['stop', '<run-id>']);
    rejects('--stop', ['stop', '<run-id>']);
    rejects('stop 1 --workflow-run-id 2', ['once']);
    rejects('stop 1 2', ['unexpected argument', '"2"']);
  });

  test('status', () => {
    assert.deepEqual(ok('status 7'), { verb: 'status', runId: 7 });
    rejects('status', ['status', '<run-id>']);
    rejects('status abc', ['<run-id>', '"abc"']);
  });

  test('workflows', () => {
    assert.deepEqual(ok('workflows'), { verb: 'workflows' });
    rejects('workflows --all', ['--all']);
  });
});

describe('history', () => {
  test('defaults to every workflow and 10 runs', () => {
    assert.deepEqual(ok('history'), { verb: 'history', limit: 10 });
  });

  test('a workflow and a limit', () => {
    assert.deepEqual(ok('history 3'), { verb: 'history', workflow: '3', limit: 10 });
    assert.deepEqual(ok('history Enrich --limit 25'), { verb: 'history', workflow: 'enrich', limit: 25 });
    assert.deepEqual(ok('history --limit=100'), { verb: 'history', limit: 100 });
    assert.deepEqual(ok('history --limit 1'), { verb: 'history', limit: 1 });
  });

  test('limit bounds', () => {
    rejects('history --limit 0', ['--limit', '"0"']);
    rejects('history --limit 101', ['--limit', '100', '"101"']);
    rejects('history --limit ten', ['--limit', '"ten"']);
    rejects('history --limit', ['--limit', 'needs a value']);
  });
});

describe('help', () => {
  test('overview or one verb', () => {
    assert.deepEqual(ok('help'), { verb: 'help' });
    assert.deepEqual(ok('help run'), { verb: 'help', topic: 'run' });
    assert.deepEqual(ok('help FORCE'), { verb: 'help', topic: 'force' });
    assert.deepEqual(ok('help db'), { verb: 'help', topic: 'db' });
    assert.deepEqual(ok('--help'), { verb: 'help' });
    assert.deepEqual(ok('-h'), { verb: 'help' });
    rejects('help nope', ['"nope"']);
    rejects('help run stop', ['unexpected argument', '"stop"']);
  });

  // The CLI answers these without loading the grammar's schemas (src/main.ts).
  test('plainHelp answers the plain requests for help, exactly as the parser would, and leaves the rest to it', () => {
    const answered = [['help'], ['--help'], ['-h'], ['HELP'], ['help', 'run'], ['help', 'Force'], ['help', 'db-stop'], ['-h', 'history']];
    const left = [[], ['list'], ['help', 'nope'], ['help', 'run', 'stop'], ['help', '--json'], ['--json', 'help'], ['help', '--list-running'], ['help', '']];
    for (const surface of ['cli', 'chat'] as const) {
      for (const argv of answered) {
        const parsed = parseCommand(argv, { surface });
        assert.ok(parsed.ok && parsed.command.verb === 'help', JSON.stringify(argv));
        assert.equal(plainHelp(argv, surface), usage(parsed.command.topic, surface), JSON.stringify(argv));
      }
      for (const argv of left) assert.equal(plainHelp(argv, surface), undefined, JSON.stringify(argv));
    }
  });
});

describe('CLI-only verbs and options', () => {
  test('serve, migrate, demo, db stop on the CLI', () => {
    assert.deepEqual(ok('serve', 'cli'), { verb: 'serve' });
    assert.deepEqual(ok('migrate', 'cli'), { verb: 'migrate' });
    assert.deepEqual(ok('demo', 'cli'), { verb: 'demo', postings: 1000 });
    assert.deepEqual(ok('demo --postings 5000', 'cli'), { verb: 'demo', postings: 5000 });
    assert.deepEqual(ok(['demo', '--postings=10000000'], 'cli'), { verb: 'demo', postings: 10_000_000 });
    assert.deepEqual(ok('db stop', 'cli'), { verb: 'db-stop' });
    assert.deepEqual(ok(['db', 'STOP'], 'cli'), { verb: 'db-stop' });
  });

  test('their errors', () => {
    rejects('demo --postings 10000001', ['--postings', '10,000,000'], 'cli');
    rejects('demo --postings 0', ['--postings', '"0"'], 'cli');
    rejects('db', ['db stop'], 'cli');
    rejects('db start', ['"start"'], 'cli');
    rejects('serve now', ['unexpected argument', '"now"'], 'cli');
  });

  test('are refused in chat', () => {
    for (const input of ['serve', 'migrate', 'demo', 'demo --postings 5', 'db stop']) {
      rejects(input, ['only available in the CLI'], 'chat');
    }
    rejects('run 3 --detach', ['--detach', 'only available in the CLI'], 'chat');
    rejects('list --json', ['--json', 'only available in the CLI'], 'chat');
    rejects('--json list', ['--json', 'only available in the CLI'], 'chat');
  });

  test('--json anywhere, --detach for run and force only', () => {
    assert.deepEqual(parse('list --json', 'cli'), { ok: true, command: { verb: 'list' }, json: true });
    assert.deepEqual(parse('--json status 4', 'cli'), { ok: true, command: { verb: 'status', runId: 4 }, json: true });
    assert.deepEqual(parse(['run', '3', '--json', '--detach'], 'cli'), { ok: true, command: run({ detach: true }), json: true });
    assert.deepEqual(parse('force 3 --detach', 'cli'), { ok: true, command: run({ force: true, detach: true }), json: false });
    assert.deepEqual(parse('list', 'chat'), { ok: true, command: { verb: 'list' }, json: false });
    rejects('list --detach', ['--detach', 'list'], 'cli');
    rejects('--json', ['--json'], 'cli');
    rejects('list --json --json', ['--json', 'twice'], 'cli');
    rejects('--json list --json', ['--json', 'twice'], 'cli');
    rejects('list --json=yes', ['--json', 'no value'], 'cli');
  });
});

describe('tokens', () => {
  test('Slack-style text with or without /workflow', () => {
    assert.deepEqual(ok('/workflow run 3'), run({}));
    assert.deepEqual(ok('/WORKFLOW   list'), { verb: 'list' });
    assert.deepEqual(ok('workflow list'), { verb: 'list' }, 'a pasted CLI line');
    assert.deepEqual(ok('  list  '), { verb: 'list' });
    assert.deepEqual(ok('run\t3\n--force'), run({ force: true }));
    assert.deepEqual(ok('run\u00a03'), run({}), 'non-breaking space separates');
  });

  test('verbs and option names ignore case', () => {
    assert.deepEqual(ok('Run 3'), run({}));
    assert.deepEqual(ok('STATUS 4'), { verb: 'status', runId: 4 });
    assert.deepEqual(ok('run 3 --Subject 4'), run({ mode: 'single_subject', subjectId: 4 }));
  });

  test('quoting', () => {
    assert.deepEqual(ok('run "enrich"'), run({ workflow: 'enrich' }));
    assert.deepEqual(ok("run 'enrich' --subject '4'"), run({ workflow: 'enrich', mode: 'single_subject', subjectId: 4 }));
    assert.deepEqual(ok('run 3 --subject="4"'), run({ mode: 'single_subject', subjectId: 4 }));
    assert.deepEqual(ok('run 3 "--force"'), run({ force: true }));
    assert.deepEqual(
      ok('run \u201cenrich\u201d --subject \u20184\u2019'),
      run({ workflow: 'enrich', mode: 'single_subject', subjectId: 4 }),
      'curly quotes from Slack',
    );
    assert.deepEqual(ok('run 3 \u2014force'), run({ force: true }), 'an em dash from Slack is --');
    rejects('run "my flow"', ['<workflow>', '"my flow"']);
    rejects('run ""', ['<workflow>', '""']);
    rejects('run "enrich', ['unclosed', '"']);
    rejects("status 'four", ['unclosed', "'four"]);
    rejects('run 3 --subject=', ['--subject', 'needs a value']);
  });

  test('a string[] is taken as tokens already', () => {
    assert.deepEqual(ok(['run', '3', '--subject', '7']), run({ mode: 'single_subject', subjectId: 7 }));
    rejects(['run', 'my flow'], ['"my flow"']);
    rejects(['/workflow', 'list'], ['unknown command', '"/workflow"'], 'cli');
    rejects([], ['empty']);
  });
});

describe('errors', () => {
  test('empty input', () => {
    for (const input of ['', '   ', '\n\t', '/workflow', 'workflow', '""']) {
      const error = err(input);
      assert.ok(input === '""' ? error.includes('unknown command') : error.includes('empty'), `${JSON.stringify(input)}: ${error}`);
    }
  });

  test('unknown verbs name the verb, with the overview as usage', () => {
    const result = parse('frobnicate 3');
    assert.equal(result.ok, false);
    if (result.ok) return;
    assert.match(result.error, /unknown command "frobnicate"/);
    assert.match(result.usage, /^Usage: \/workflow <command>/);
  });

  test('unknown options name the option and the verb', () => {
    rejects('run 3 --bogus', ['--bogus', 'run']);
    rejects('run 3 --bogus=1', ['--bogus', 'run']);
    rejects('run 3 -f', ['"-f"']);
    rejects('run 3 --', ['"--"']);
    rejects('run 3 -force', ['"-force"']);
    rejects('history --limit 5 --mode global_batch', ['--mode', 'history']);
  });

  test('repeated options, also through an alias', () => {
    rejects('run 3 --force --force', ['--force', 'twice']);
    rejects('run 3 --subject 1 --subject 1', ['--subject', 'twice']);
    rejects('run 3 --subject 1 --posting-id 2', ['--posting-id', '--subject']);
    rejects('run 3 --mode single_run --mode=single_run --run 1', ['--mode']);
    rejects('history --limit 5 --limit=6', ['--limit']);
  });

  test('stray positionals', () => {
    rejects('run 3 4', ['unexpected argument', '"4"']);
    rejects('status 1 extra', ['"extra"']);
    rejects('workflows please', ['"please"']);
  });

  test('missing values and values on switches', () => {
    rejects('run 3 --subject', ['--subject', 'needs a value']);
    rejects('run 3 --subject --force', ['--subject', 'needs a value']);
    rejects('run 3 --force=true', ['--force', 'no value']);
  });

  test('ids are positive decimal integers, nothing else', () => {
    for (const bad of [
      '0',
      '-1',
      '1.5',
      '1e3',
      '0x10',
      '+5',
      '007',
      '1_000',
      'Infinity',
      'NaN',
      '٣',
      String(Number.MAX_SAFE_INTEGER + 1),
      '99999999999999999999999',
    ]) {
      rejects(['status', bad], ['<run-id>']);
      rejects(['run', '3', '--subject', bad], ['--subject']);
    }
    assert.deepEqual(ok(['status', String(Number.MAX_SAFE_INTEGER)]), { verb: 'status', runId: Number.MAX_SAFE_INTEGER });
    rejects(['status', String(Number.MAX_SAFE_INTEGER + 1)], ['at most']);
  });

  test('input over 1,000 characters is refused before tokenising', () => {
    assert.equal(MAX_INPUT_LENGTH, 1000);
    rejects('run 3 ' + 'x'.repeat(995), ['too long', '1001']);
    rejects('"' + 'a'.repeat(10_240), ['too long'], 'cli'); // an unclosed quote would be another error: never tokenised
    rejects(['run', 'a'.repeat(10_240)], ['too long'], 'cli');
    rejects('list' + ' '.repeat(997), ['too long']);
    assert.deepEqual(ok('list' + ' '.repeat(996)), { verb: 'list' });
  });

  test('unicode and control characters give clean one-line errors', () => {
    rejects('run café', ['"café"']);
    rejects('run 🚀', ['"🚀"']);
    rejects('ラン 3', ['"ラン"']);
    rejects('run 3 --sübject 4', ['--sübject']);
    rejects('status \u0663', ['<run-id>']); // Arabic-Indic digit three
    rejects('run \u212Aey', ['<workflow>']); // the Kelvin sign lowercases to k: still not a name
    rejects('run \u202Eevil', ['\\u{202e}']); // right-to-left override is shown escaped
    rejects('run a\u200Bb', ['\\u{200b}']); // zero-width space
    rejects('run "a\nb"', ['\\u{a}']);
    rejects('run "a\u2028b"', ['\\u{2028}']);
    rejects('run a\u0000b', ['\\u{0}']);
    rejects('run \uD800', ['<workflow>']); // a lone surrogate
    rejects('\u0007', ['unknown command']);
    rejects('run ' + '\u00e9'.repeat(500), ['…']); // quoted tokens are shortened
  });

  test('SQL-looking text is just an invalid token', () => {
    rejects("'; DROP TABLE workflow_runs; --", ['unclosed']);
    rejects('run "\'; DROP TABLE workflow_runs; --"', ['<workflow>', 'DROP TABLE']);
    rejects(['run', "'; DROP TABLE workflow_runs; --"], ['<workflow>', 'DROP TABLE']);
    rejects('status 1;DROP', ['<run-id>', '"1;DROP"']);
    rejects("status '1; DROP TABLE workflow_runs'", ['<run-id>', 'DROP TABLE']);
    rejects('status 1;DROP TABLE workflow_runs', ['unexpected argument', '"TABLE"']);
    rejects("history --limit '10; DROP TABLE workflow_runs; --'", ['--limit']);
    rejects('run 3 --subject=1 OR 1=1', ['unexpected argument', '"OR"']);
  });

  test('names of Object.prototype members are not verbs or options', () => {
    for (const input of ['constructor', '__proto__', 'toString', 'hasOwnProperty']) rejects(input, ['unknown command']);
    rejects('run 3 --constructor', ['--constructor']);
    rejects('run 3 --__proto__ 1', ['--__proto__']);
    rejects('run 3 --toString=1', ['--toString']);
    rejects('help constructor', ['"constructor"']);
    rejects('db __proto__', ['"__proto__"'], 'cli');
  });
});

describe('usage', () => {
  const verbs = ['run', 'force', 'list', 'stop', 'status', 'history', 'workflows', 'help'];
  const cliVerbs = ['serve', 'migrate', 'demo', 'db stop'];

  test('the overview lists every verb, one line each', () => {
    const cli = usage(undefined, 'cli').split('\n');
    for (const verb of [...verbs, ...cliVerbs]) {
      assert.equal(cli.filter((line) => line.trimStart().startsWith(`${verb} `) || line.trim() === verb).length, 1, verb);
    }
    const chat = usage(undefined, 'chat');
    for (const verb of verbs) assert.match(chat, new RegExp(`^  ${verb}\\b`, 'm'));
    for (const verb of cliVerbs) assert.doesNotMatch(chat, new RegExp(`^  ${verb}\\b`, 'm'));
    assert.match(chat, /^Usage: \/workflow/);
    assert.match(usage(undefined, 'cli'), /^Usage: workflow /);
    assert.match(usage(undefined, 'cli'), /--json/);
  });

  test('one verb in detail; unknown topics get the overview', () => {
    assert.match(usage('run'), /--mode global_batch\|single_subject\|single_run/);
    assert.match(usage('run'), /--posting-id/);
    assert.doesNotMatch(usage('run', 'chat'), /--detach/);
    assert.match(usage('run', 'cli'), /--detach/);
    assert.match(usage('HISTORY'), /--limit N/);
    assert.match(usage('db-stop', 'cli'), /db stop/);
    assert.equal(usage('nope'), usage());
  });

  test('an error carries the usage of its verb', () => {
    const result = parse('history --limit 0');
    assert.ok(!result.ok);
    if (!result.ok) assert.equal(result.usage, usage('history', 'chat'));
    const cli = parseCommand('run 3 --bogus', { surface: 'cli' });
    assert.ok(!cli.ok);
    if (!cli.ok) assert.equal(cli.usage, usage('run', 'cli'));
  });
});

describe('property: any token string gives a command or a one-line error', () => {
  // mulberry32: small, seeded, good enough to spread inputs around.
  function prng(seed: number): () => number {
    return () => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  const vocabulary = [
    'run',
    'force',
    'list',
    'stop',
    'status',
    'history',
    'workflows',
    'help',
    'serve',
    'migrate',
    'demo',
    'db',
    'RUN',
    '/workflow',
    'workflow',
    '--mode',
    'global_batch',
    'single_subject',
    'single_run',
    'single_posting',
    '--subject',
    '--run',
    '--force',
    '--posting-id',
    '--workflow-run-id',
    '--list-running',
    '--stop',
    '--limit',
    '--postings',
    '--json',
    '--detach',
    '--help',
    '-h',
    '--',
    '-',
    '=',
    '--mode=single_run',
    '--subject=',
    '0',
    '1',
    '3',
    '42',
    '-1',
    '1.5',
    '1e3',
    '0x1f',
    '9007199254740992',
    '100',
    '101',
    'enrich',
    'Enrich-Postings',
    'a_b',
    'é',
    '🚀',
    '\u0000',
    '\u202e',
    '\u2028',
    '"',
    "'",
    '\u201c',
    '\u2019',
    '\u2014force',
    '"quoted words"',
    "'; DROP TABLE workflow_runs; --",
    'constructor',
    '__proto__',
    '--__proto__',
    '--constructor=1',
    'toString',
    '\\',
    '$(rm -rf /)',
    '%s',
    '${x}',
    '\uD800',
    '\t',
    '\n',
  ];

  test('5,000 random inputs, strings and token arrays, both surfaces', () => {
    const random = prng(20240611);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
    const randomChars = () => Array.from({ length: 1 + Math.floor(random() * 6) }, () => String.fromCharCode(Math.floor(random() * 0x3000))).join('');
    let accepted = 0;

    for (let i = 0; i < 5_000; i++) {
      const tokens = Array.from({ length: Math.floor(random() * 8) }, () => (random() < 0.85 ? pick(vocabulary) : randomChars()));
      const input = random() < 0.5 ? tokens : tokens.join(pick([' ', '  ', '\t', '=', '']));
      const surface: Surface = random() < 0.5 ? 'cli' : 'chat';

      let result: ParseResult;
      try {
        result = parseCommand(input, { surface });
      } catch (error) {
        assert.fail(`threw on ${JSON.stringify(input)}: ${String(error)}`);
      }
      assert.equal(typeof result.ok, 'boolean');
      if (!result.ok) {
        assertOneLine(result.error);
        assert.ok(result.usage.length > 0);
        continue;
      }
      accepted++;
      const command = result.command;
      if (surface === 'chat') {
        assert.equal(result.json, false);
        assert.ok(!['serve', 'migrate', 'demo', 'db-stop'].includes(command.verb), JSON.stringify(input));
      }
      if (command.verb === 'run') {
        if (surface === 'chat') assert.equal(command.detach, false);
        assert.equal(command.mode === 'single_subject', command.subjectId !== undefined, JSON.stringify(input));
        assert.equal(command.mode === 'single_run', command.runId !== undefined, JSON.stringify(input));
        assert.ok(command.workflow !== undefined || command.mode === 'single_run');
      }
      for (const id of ['runId' in command && command.runId, 'subjectId' in command && command.subjectId]) {
        if (typeof id === 'number') assert.ok(Number.isSafeInteger(id) && id > 0);
      }
      if (command.verb === 'history') assert.ok(command.limit >= 1 && command.limit <= 100);
    }
    assert.ok(accepted > 50, `the generator should also produce valid commands (got ${accepted})`);
  });
});
