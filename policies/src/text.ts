/**
 * Terminal-safe text for human output. Board text (titles, errors, payloads, skill commands, a
 * status file's fields) is written by anyone who can add a task or run a worker: printed raw, an
 * ESC starts a terminal escape sequence and a newline or tab forges lines and columns. Control
 * characters (C0, DEL, C1), the Unicode line and paragraph separators and the bidirectional
 * controls are shown as escapes instead: \n \r \t, \xHH, \uHHHH. JSON output needs none of this.
 */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

export function printable(text: string): string {
  return text.replace(UNSAFE, (c) => {
    if (c === '\n') return '\\n';
    if (c === '\r') return '\\r';
    if (c === '\t') return '\\t';
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

/** `printable`, keeping the newlines of a multi-line text (a report whose lines are all untrusted). */
export function printableLines(text: string): string {
  return text.split('\n').map(printable).join('\n');
}
