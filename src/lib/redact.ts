// Credentials out of text that is about to be shown (an error about a
// setting, a log line, a chat message). The text may be a well-formed URL, a
// malformed one (`htp://u:pw@h`, `postgres:/u:pw@h`, `u:pw@h` with no scheme)
// or not a URL at all, so this does not parse: it removes whatever could be
// a credential and errs on the side of removing too much.

const SCHEME = /^[a-z][a-z0-9+.-]*:\/*/i;
/** Query or key=value parameters that carry secrets: password, sslpassword, token, secret, api_key, auth… */
const SECRET_PARAMETER = /([?&;\s]|^)([^=&;\s]*(?:pass|pwd|token|secret|key|auth|credential)[^=&;\s]*=)[^&;\s#]*/gi;

export const REDACTED = '[redacted]';

/**
 * `text` with the user information of anything URL-like replaced: everything
 * between the scheme (or the start) and the last `@` (a password may itself
 * hold `@`, `/` or `:`), and the values of secret-looking parameters.
 */
export function redactCredentials(text: string): string {
  // Parameters first: a password= value may itself hold an `@`.
  let shown = text.replace(SECRET_PARAMETER, `$1$2${REDACTED}`);
  const scheme = SCHEME.exec(shown)?.[0] ?? '';
  const at = shown.lastIndexOf('@');
  if (at >= 0) {
    const start = scheme.length <= at ? scheme.length : 0;
    shown = `${shown.slice(0, start)}${REDACTED}${shown.slice(at)}`;
  } else {
    // `scheme://user:secret` with the `@host` forgotten: what follows the colon is a port only when it is digits.
    const authority = /^[^/?#[\s]*/.exec(shown.slice(scheme.length))?.[0] ?? '';
    const colon = authority.indexOf(':');
    if (colon >= 0 && !/^\d*$/.test(authority.slice(colon + 1))) {
      shown = `${shown.slice(0, scheme.length + colon + 1)}${REDACTED}${shown.slice(scheme.length + authority.length)}`;
    }
  }
  return shown;
}
