import type { Config } from '../../config.ts';

// Apart from app.ts so that deciding between Slack and the console chat does
// not load Bolt: `serve` loads it only when Slack is configured.

export type SlackMode = 'socket' | 'http';

/** Which Slack mode the configuration asks for; undefined = no Slack (the console chat). */
export function slackMode(config: Config): SlackMode | undefined {
  if (config.SLACK_APP_TOKEN) return 'socket';
  if (config.SLACK_SIGNING_SECRET) return 'http';
  return undefined;
}
