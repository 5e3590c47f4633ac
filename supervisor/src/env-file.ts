/**
 * `run --env-file FILE`: variables for every worker, in systemd's EnvironmentFile syntax:
 *
 *   # a comment (also ; at the start of a line); blank lines are ignored
 *   KEY=value                 leading and trailing blanks of an unquoted value are dropped;
 *                             a backslash escapes the next character; one at the end of the line
 *                             continues the value on the next line
 *   KEY="a value"             double quotes: \" \\ \$ \` and \<newline> are escapes, a value may
 *                             span lines
 *   KEY='a value'             single quotes: taken literally, may span lines
 *
 * Keys are shell names ([A-Za-z_][A-Za-z0-9_]*); KANBAN_* is refused (the supervisor sets those).
 * A later line wins over an earlier one. Every error names the file and the line.
 */
import * as fs from 'node:fs';
import { ConfigError } from '@kanban-supervisor/policies';

export class EnvFileError extends ConfigError {
  override name = 'EnvFileError';
}

const KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** An env file is small; refuse one that is not (a wrong path, a log). */
const MAX_BYTES = 1024 * 1024;

export function parseEnvFile(text: string, file: string): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  let line = 1;
  const n = text.length;
  const fail = (at: number, msg: string): never => {
    throw new EnvFileError(`--env-file ${file}: line ${at}: ${msg}`);
  };
  while (i < n) {
    // Start of a line: skip blanks.
    while (i < n && (text[i] === ' ' || text[i] === '\t' || text[i] === '\r')) i++;
    if (i >= n) break;
    if (text[i] === '\n') {
      i++;
      line++;
      continue;
    }
    if (text[i] === '#' || text[i] === ';') {
      while (i < n && text[i] !== '\n') i++;
      continue;
    }
    const keyLine = line;
    let key = '';
    while (i < n && text[i] !== '=' && text[i] !== '\n') key += text[i++];
    key = key.trim();
    if (i >= n || text[i] === '\n') fail(keyLine, `expected KEY=VALUE, got ${JSON.stringify(key)}`);
    if (!KEY.test(key)) fail(keyLine, `invalid variable name ${JSON.stringify(key)} (letters, digits and _, not starting with a digit)`);
    if (key.startsWith('KANBAN_')) fail(keyLine, `${key}: KANBAN_* variables are set by the supervisor`);
    i++; // '='
    while (i < n && (text[i] === ' ' || text[i] === '\t')) i++;
    let value = '';
    if (text[i] === '"' || text[i] === "'") {
      const q = text[i]!;
      const openLine = line;
      i++;
      for (;;) {
        if (i >= n) fail(openLine, `${key}: the ${q === '"' ? 'double' : 'single'} quote opened here is never closed`);
        const c = text[i]!;
        if (c === q) {
          i++;
          break;
        }
        if (c === '\n') line++;
        if (q === '"' && c === '\\' && i + 1 < n) {
          const d = text[i + 1]!;
          if (d === '\n') {
            line++;
            i += 2;
            continue;
          }
          if (d === '"' || d === '\\' || d === '$' || d === '`') {
            value += d;
            i += 2;
            continue;
          }
        }
        value += c;
        i++;
      }
      // Only blanks or a comment may follow the closing quote.
      while (i < n && (text[i] === ' ' || text[i] === '\t' || text[i] === '\r')) i++;
      if (i < n && text[i] !== '\n' && text[i] !== '#') fail(line, `${key}: unexpected text after the closing quote`);
      while (i < n && text[i] !== '\n') i++;
    } else {
      for (;;) {
        if (i >= n || text[i] === '\n') break;
        const c = text[i]!;
        if (c === '\\' && i + 1 < n) {
          const d = text[i + 1]!;
          i += 2;
          if (d === '\n') {
            line++;
            continue;
          }
          value += d;
          continue;
        }
        value += c;
        i++;
      }
      value = value.replace(/[ \t\r]+$/, '');
    }
    if (value.includes('\0')) fail(keyLine, `${key}: the value contains a NUL byte`);
    out[key] = value;
  }
  return out;
}

/**
 * Read and parse an env file: a regular file (a FIFO is refused without blocking on it), at most
 * 1 MiB, UTF-8. It is the operator's file, not one in a folder workers write: a symlink is followed.
 */
export function readEnvFile(file: string): Record<string, string> {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0));
  } catch (e) {
    throw new EnvFileError(`--env-file ${file}: cannot be read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let text: string;
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new EnvFileError(`--env-file ${file}: is not a regular file`);
    if (st.size > MAX_BYTES) throw new EnvFileError(`--env-file ${file}: is larger than ${MAX_BYTES} bytes`);
    const buf = Buffer.alloc(st.size);
    let got = 0;
    while (got < buf.length) {
      const r = fs.readSync(fd, buf, got, buf.length - got, got);
      if (r === 0) break;
      got += r;
    }
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(0, got));
    } catch {
      throw new EnvFileError(`--env-file ${file}: is not valid UTF-8`);
    }
  } finally {
    fs.closeSync(fd);
  }
  return parseEnvFile(text, file);
}
