import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { oneLine } from '../src/lib/one-line.ts';

describe('oneLine', () => {
  test('every run of spaces and line breaks becomes one space, trimmed', () => {
    assert.equal(oneLine('  a \t b \r\n\n c\u2028d\u00a0 '), 'a b c d');
    assert.equal(oneLine(''), '');
    assert.equal(oneLine(' \n\t '), '');
  });

  test('join keeps lines apart, blank lines dropped', () => {
    assert.equal(
      oneLine('pg_ctl: could not start server\n\n  Examine the log output.\n', { join: '; ' }),
      'pg_ctl: could not start server; Examine the log output.',
    );
    assert.equal(oneLine('one line', { join: '; ' }), 'one line');
  });

  test('control characters and bidirectional controls cannot reach a terminal or reorder the line', () => {
    assert.equal(oneLine('a\x1b[31mb\x00c\x7fd\u0085e'), 'a [31mb c d e');
    assert.equal(oneLine('user\u202eexe.txt \u2066x\u2069'), 'user exe.txt x');
    // Joiners inside emoji and letters of every script stay.
    assert.equal(oneLine('👩‍💻 名前 ünïcødé'), '👩‍💻 名前 ünïcødé');
  });

  test('errors read "Name: message"; anything else as String() gives it', () => {
    assert.equal(oneLine(new TypeError('bad\n  thing')), 'TypeError: bad thing');
    assert.equal(oneLine(42), '42');
    assert.equal(oneLine(null), 'null');
    assert.equal(oneLine(Symbol('s')), 'Symbol(s)');
    assert.equal(oneLine(Object.create(null)), '[object Object]');
  });

  test('max cuts with "…" within the limit, never inside a surrogate pair', () => {
    assert.equal(oneLine('x'.repeat(10), { max: 5 }), 'xxxx…');
    assert.equal(oneLine('x'.repeat(5), { max: 5 }), 'xxxxx');
    assert.equal(oneLine('abc🚀d', { max: 5 }), 'abc…');
    assert.equal(oneLine('a\n\nb\nc', { join: '; ', max: 6 }), 'a; b;…');
  });
});
