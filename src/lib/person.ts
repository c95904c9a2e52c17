// Who asked, as the audit stores it and as people read it. A Slack user is
// stored as "U024BE7LH (ana)": the id keeps it unique, the name readable.
// Every other requester (ana@laptop, console:ana, schedule) is its own name.

export interface Person {
  /** The Slack user id, when the requester is a Slack user: mentioned as <@id> in Slack. */
  slackId: string | null;
  /** What a terminal shows: the Slack display name when known, else the stored text. */
  name: string;
}

const SLACK_USER = /^([UW][A-Z0-9]{2,20})(?: \((.{1,80})\))?$/;

export function person(stored: string): Person {
  const match = SLACK_USER.exec(stored);
  if (!match) return { slackId: null, name: stored };
  return { slackId: match[1]!, name: match[2] ?? match[1]! };
}

/** A requester in a terminal: "@ana" for a Slack user, the stored name otherwise. */
export function personLabel(stored: string): string {
  const p = person(stored);
  return p.slackId ? `@${p.name}` : p.name;
}
