// JSON.parse keeps the last of two equal keys without a word; log readers
// differ (some keep the first, some fail). This walks JSON text and names
// every key that an object holds twice.

/** Keys repeated within one object, as "path.key"; empty when there are none. Throws on text that is not JSON. */
export function duplicateKeys(json: string): string[] {
  let i = 0;
  const found: string[] = [];
  const space = () => {
    while (/\s/.test(json[i] ?? '')) i++;
  };
  const string = (): string => {
    const start = i;
    i++; // opening quote
    while (json[i] !== '"') {
      if (i >= json.length) throw new SyntaxError('unterminated string');
      i += json[i] === '\\' ? 2 : 1;
    }
    i++;
    return JSON.parse(json.slice(start, i)) as string;
  };
  const value = (path: string): void => {
    space();
    const ch = json[i];
    if (ch === '{') {
      i++;
      const keys = new Set<string>();
      space();
      if (json[i] === '}') {
        i++;
        return;
      }
      for (;;) {
        space();
        const key = string();
        if (keys.has(key)) found.push(path ? `${path}.${key}` : key);
        keys.add(key);
        space();
        if (json[i++] !== ':') throw new SyntaxError(`expected : at ${i - 1}`);
        value(path ? `${path}.${key}` : key);
        space();
        const next = json[i++];
        if (next === '}') return;
        if (next !== ',') throw new SyntaxError(`expected , or } at ${i - 1}`);
      }
    }
    if (ch === '[') {
      i++;
      space();
      if (json[i] === ']') {
        i++;
        return;
      }
      for (let n = 0; ; n++) {
        value(`${path}[${n}]`);
        space();
        const next = json[i++];
        if (next === ']') return;
        if (next !== ',') throw new SyntaxError(`expected , or ] at ${i - 1}`);
      }
    }
    if (ch === '"') {
      string();
      return;
    }
    const literal = /^(?:true|false|null|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/.exec(json.slice(i));
    if (!literal) throw new SyntaxError(`unexpected ${JSON.stringify(ch)} at ${i}`);
    i += literal[0].length;
  };
  value('');
  space();
  if (i !== json.length) throw new SyntaxError(`trailing text at ${i}`);
  return found;
}
