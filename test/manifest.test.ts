// manifest.yml is what a user pastes into Slack's "Create app from manifest":
// it must pass Slack's own manifest schema, declare /workflow with a usage
// hint, and ask for exactly the bot scopes the app uses.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import AjvModule, { type ErrorObject, type ValidateFunction } from 'ajv';
import { parse } from 'yaml';

// Slack's schema (MIT, from slackapi/manifest-schema) is kept in the repository
// with its licence: vendor/slack-manifest-schema/.
const SCHEMA_URL = new URL('../vendor/slack-manifest-schema/manifest.schema.1.0.0.json', import.meta.url);
const MANIFEST_URL = new URL('../manifest.yml', import.meta.url);

/** The bot scopes the app uses; manifest.yml justifies each one. */
const INTENDED_BOT_SCOPES = ['chat:write', 'commands', 'usergroups:read'];

// ajv is CommonJS: under Node's ESM loader the default import is module.exports (the class), typed as the module.
const Ajv = (AjvModule as unknown as { default: typeof AjvModule.default }).default ?? AjvModule;

function loadValidator(): ValidateFunction {
  const schemaPath = fileURLToPath(SCHEMA_URL);
  const schema = JSON.parse(readFileSync(schemaPath, 'utf8')) as { $schema?: string };
  // The schema declares draft-07, which is Ajv's default class (2019/2020 are for the newer drafts).
  assert.equal(schema.$schema, 'http://json-schema.org/draft-07/schema#', 'the schema changed draft: pick the matching Ajv class');
  // strictSchema (unknown keywords are errors) yes; strictTypes no: Slack's
  // schema leaves "type" implicit beside minItems in places, which is legal.
  const ajv = new Ajv({ allErrors: true, strictSchema: true, strictTypes: false, strictTuples: false, strictRequired: false });
  // Strict schema mode stays on (a typo in the schema would otherwise pass silently), so
  // declare what Slack's schema uses beyond draft-07: format "uri" (ajv-formats
  // is not a dependency; URL parsing is enough), a "_note" annotation, and a
  // non-standard "regex" keyword (meant as "pattern"): enforced, not ignored.
  ajv.addFormat('uri', (value: string) => URL.canParse(value));
  ajv.addKeyword({ keyword: '_note', schemaType: 'string' });
  ajv.addKeyword({
    keyword: 'regex',
    type: 'string',
    schemaType: 'string',
    validate: (pattern: string, data: string) => new RegExp(pattern).test(data),
    errors: false,
  });
  return ajv.compile(schema);
}

function loadManifest(): Record<string, any> {
  return parse(readFileSync(MANIFEST_URL, 'utf8')) as Record<string, any>;
}

function describeErrors(errors: ErrorObject[] | null | undefined): string {
  return (errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? e.keyword} ${JSON.stringify(e.params)}`).join('\n');
}

const validate = loadValidator();

test("manifest.yml passes Slack's manifest schema", () => {
  const manifest = loadManifest();
  const ok = validate(manifest);
  assert.equal(ok, true, `schema errors:\n${describeErrors(validate.errors)}`);
  assert.equal(validate.errors ?? null, null);
});

test('declares /workflow with a description and a usage hint', () => {
  const commands = loadManifest().features?.slash_commands as { command: string; description?: string; usage_hint?: string; url?: string }[];
  const workflow = commands.find((c) => c.command === '/workflow');
  assert.ok(workflow, 'no /workflow slash command');
  assert.ok(workflow.description && workflow.description.length > 0);
  assert.match(workflow.usage_hint ?? '', /run .*list.*stop/, 'the usage hint should show the verbs');
  // Socket Mode (the manifest's default) takes no request URL; HTTP mode adds one (docs/slack.md).
  assert.equal(workflow.url, undefined);
});

test('asks for exactly the bot scopes the app uses, and no user scopes', () => {
  const scopes = loadManifest().oauth_config?.scopes;
  assert.deepEqual([...(scopes?.bot ?? [])].sort(), INTENDED_BOT_SCOPES);
  assert.equal(scopes?.user, undefined);
  assert.equal(scopes?.bot_optional, undefined);
});

test('interactivity, App Home, app_home_opened and Socket Mode are on', () => {
  const manifest = loadManifest();
  assert.equal(manifest.settings.interactivity.is_enabled, true);
  assert.equal(manifest.features.app_home.home_tab_enabled, true);
  assert.deepEqual(manifest.settings.event_subscriptions.bot_events, ['app_home_opened']);
  assert.equal(manifest.settings.socket_mode_enabled, true);
  assert.ok(manifest.features.bot_user.display_name);
});

test('the HTTP-mode variant the README describes is valid too', () => {
  const manifest = loadManifest();
  const url = 'https://workflow.example.com/slack/events';
  manifest.settings.socket_mode_enabled = false;
  manifest.features.slash_commands[0].url = url;
  manifest.settings.interactivity.request_url = url;
  manifest.settings.event_subscriptions.request_url = url;
  assert.equal(validate(manifest), true, describeErrors(validate.errors));
});

test('the validator bites: unknown keys and bad values are errors', () => {
  const cases: [string, (m: Record<string, any>) => void, RegExp][] = [
    ['unknown top-level key', (m) => (m.slash_commands = m.features.slash_commands), /must NOT have additional properties/],
    ['unknown key in a slash command', (m) => (m.features.slash_commands[0].usage = 'run 3001'), /additionalProperty.*usage/],
    ['unknown setting', (m) => (m.settings.socket_mode = true), /additionalProperty.*socket_mode/],
    ['command without a leading slash', (m) => (m.features.slash_commands[0].command = 'workflow'), /must match pattern/],
    ['bad background colour (the schema\'s "regex" keyword)', (m) => (m.display_information.background_color = 'red!'), /must pass "regex" keyword/],
    ['interactivity without is_enabled', (m) => delete m.settings.interactivity.is_enabled, /must have required property 'is_enabled'/],
  ];
  for (const [what, mutate, expected] of cases) {
    const manifest = loadManifest();
    mutate(manifest);
    assert.equal(validate(manifest), false, `${what}: accepted`);
    assert.match(describeErrors(validate.errors), expected, what);
  }
});
