/**
 * The page scan: this module's own b-tree leaf parser, with the -wal's committed frames laid over
 * the file. It finds table rows where SQLite's tree walk cannot reach them, for instance below a
 * zeroed interior page or when the schema page itself is gone. Rows are attributed to a table by
 * their number of columns and column types (`fitsColumns`); a cell that fits no table, or more
 * than one, is not attributed. Malformed cells and records are skipped, never guessed at.
 */
import { closeSync, openSync, statSync } from 'node:fs';
import { readAll } from './io.js';
import { ADDED_COLUMNS, type TableShape, type Value } from './shape.js';
import type { WalParse } from './wal.js';

/** The snapshot's pages, each read from its newest committed -wal frame when it has one, else from the file. */
export class Pages {
  readonly pageCount: number;
  readonly usable: number;
  private fd: number;
  private walFd: number | null;

  constructor(
    db: string,
    wal: string | null,
    private readonly walParse: WalParse | null,
    readonly pageSize: number,
    reserved: number,
  ) {
    this.fd = openSync(db, 'r');
    this.walFd = wal && walParse && walParse.frames.size > 0 ? openSync(wal, 'r') : null;
    const filePages = Math.ceil(statSync(db).size / pageSize);
    this.pageCount = Math.max(filePages, walParse?.dbPages ?? 0);
    this.usable = pageSize - reserved;
  }

  page(n: number): Buffer {
    const off = this.walFd !== null ? this.walParse!.frames.get(n) : undefined;
    if (off !== undefined) return readAll(this.walFd!, off, this.pageSize);
    return readAll(this.fd, (n - 1) * this.pageSize, this.pageSize);
  }

  close(): void {
    closeSync(this.fd);
    if (this.walFd !== null) closeSync(this.walFd);
  }
}

function varint(buf: Buffer, pos: number, end: number): { v: bigint; n: number } | null {
  let v = 0n;
  for (let i = 0; i < 9; i++) {
    if (pos + i >= end) return null;
    const b = buf[pos + i]!;
    if (i === 8) return { v: BigInt.asIntN(64, (v << 8n) | BigInt(b)), n: 9 };
    v = (v << 7n) | BigInt(b & 0x7f);
    if ((b & 0x80) === 0) return { v: BigInt.asIntN(64, v), n: i + 1 };
  }
  return null;
}

export interface RawCell {
  rowid: bigint;
  values: Value[];
}

/** Decode every well-formed cell of a table leaf page; malformed cells are skipped. */
export function leafCells(pages: Pages, pgno: number, page: Buffer): RawCell[] | null {
  const hdr = pgno === 1 ? 100 : 0;
  if (page[hdr] !== 0x0d) return null;
  const U = pages.usable;
  const ncell = page.readUInt16BE(hdr + 3);
  const ptrEnd = hdr + 8 + 2 * ncell;
  if (ptrEnd > U) return null;
  const out: RawCell[] = [];
  const X = U - 35;
  const M = Math.floor(((U - 12) * 32) / 255) - 23;
  for (let i = 0; i < ncell; i++) {
    const p = page.readUInt16BE(hdr + 8 + 2 * i);
    if (p < ptrEnd || p >= U) continue;
    const size = varint(page, p, U);
    if (!size || size.v < 0n || size.v > 1_000_000_000n) continue;
    const rowid = varint(page, p + size.n, U);
    if (!rowid) continue;
    const P = Number(size.v);
    let local = P;
    if (P > X) {
      const K = M + ((P - M) % (U - 4));
      local = K <= X ? K : M;
    }
    const start = p + size.n + rowid.n;
    if (start + local + (local < P ? 4 : 0) > U) continue;
    let payload: Buffer;
    if (local === P) {
      payload = page.subarray(start, start + P);
    } else {
      payload = Buffer.alloc(P);
      page.copy(payload, 0, start, start + local);
      let got = local;
      let next = page.readUInt32BE(start + local);
      let hops = 0;
      const maxHops = Math.ceil((P - local) / (U - 4)) + 1;
      while (got < P && next >= 1 && next <= pages.pageCount && hops++ < maxHops) {
        const ov = pages.page(next);
        const take = Math.min(U - 4, P - got);
        ov.copy(payload, got, 4, 4 + take);
        got += take;
        next = ov.readUInt32BE(0);
      }
      if (got < P) continue;
    }
    const values = decodeRecord(payload);
    if (values) out.push({ rowid: rowid.v, values });
  }
  return out;
}

function decodeRecord(rec: Buffer): Value[] | null {
  const h = varint(rec, 0, rec.length);
  if (!h) return null;
  const hlen = Number(h.v);
  if (hlen < 1 || hlen > rec.length) return null;
  const types: number[] = [];
  let pos = h.n;
  while (pos < hlen) {
    const t = varint(rec, pos, hlen);
    if (!t || t.v < 0n || t.v > 2_000_000_000n) return null;
    types.push(Number(t.v));
    pos += t.n;
  }
  if (pos !== hlen) return null;
  const values: Value[] = [];
  let off = hlen;
  for (const t of types) {
    let len: number;
    if (t === 0 || t === 8 || t === 9) len = 0;
    else if (t >= 1 && t <= 4) len = t;
    else if (t === 5) len = 6;
    else if (t === 6 || t === 7) len = 8;
    else if (t === 10 || t === 11) return null;
    else len = Math.floor((t - 12) / 2);
    if (off + len > rec.length) return null;
    const b = rec.subarray(off, off + len);
    if (t === 0) values.push(null);
    else if (t === 8) values.push(0n);
    else if (t === 9) values.push(1n);
    else if (t <= 6) {
      let v = 0n;
      for (const byte of b) v = (v << 8n) | BigInt(byte);
      values.push(BigInt.asIntN(len * 8, v));
    } else if (t === 7) values.push(b.readDoubleBE(0));
    else if (t % 2 === 0) values.push(Buffer.from(b));
    else {
      const s = b.toString('utf8');
      if (s.includes('\uFFFD')) return null; // not valid UTF-8: garbage, not a row
      values.push(s);
    }
    off += len;
  }
  if (off !== rec.length) return null;
  return values;
}

export function fitsColumns(values: Value[], shape: TableShape): boolean {
  const n = shape.columns.length;
  // A record written before columns were added at the end of its table lacks them (ADDED_COLUMNS).
  if (values.length > n || values.length < n - (ADDED_COLUMNS[shape.name] ?? 0)) return false;
  return values.every((v, i) => {
    if (i === shape.aliasIndex) return v === null;
    if (v === null) return true;
    const t = shape.columns[i]!.type;
    if (t === 'INTEGER' || t === 'INT') return typeof v === 'bigint';
    if (t === 'REAL') return typeof v === 'number' || typeof v === 'bigint';
    if (t === 'TEXT') return typeof v === 'string';
    if (t === 'BLOB') return Buffer.isBuffer(v);
    return true;
  });
}

export interface ScanHit {
  pgno: number;
  rowid: number;
}

/** Scan every page for table leaf cells and attribute them to tables by shape. */
export function scanPages(pages: Pages, shapes: TableShape[], log: (s: string) => void): Map<string, ScanHit[]> {
  const hits = new Map<string, ScanHit[]>(shapes.map((s) => [s.name, []]));
  let leaves = 0;
  for (let n = 1; n <= pages.pageCount; n++) {
    const cells = leafCells(pages, n, pages.page(n));
    if (!cells) continue;
    leaves++;
    for (const c of cells) {
      const matches = shapes.filter((s) => fitsColumns(c.values, s));
      if (matches.length === 1) hits.get(matches[0]!.name)!.push({ pgno: n, rowid: Number(c.rowid) });
    }
  }
  log(`page scan: ${pages.pageCount} pages, ${leaves} table leaves, ${[...hits].map(([t, h]) => `${t} ${h.length}`).join(', ')}`);
  return hits;
}
