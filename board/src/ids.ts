import { randomBytes } from 'node:crypto';

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';

function base32(bytes: Buffer, length: number): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5 && out.length < length) {
      out += ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return out;
}

/** Short random task id (50 bits); collisions are retried by the caller. */
export function newTaskId(): string {
  return 't' + base32(randomBytes(7), 10);
}

export function newRunId(): string {
  return 'r' + base32(randomBytes(8), 12);
}

/** 128-bit random run token, hex. Never logged. */
export function newToken(): string {
  return randomBytes(16).toString('hex');
}
