/**
 * The page's files (web/public), read once at start and served from memory with a strong ETag.
 * ASSETS is the one list of them: the route table, the tests and the page-weight check read it.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export interface AssetSpec {
  /** The URL path it is served at. */
  route: string;
  /** Its file under web/public. */
  file: string;
  contentType: string;
}

export const ASSETS: readonly AssetSpec[] = [
  { route: '/', file: 'index.html', contentType: 'text/html; charset=utf-8' },
  { route: '/app.js', file: 'app.js', contentType: 'text/javascript; charset=utf-8' },
  { route: '/lib.js', file: 'lib.js', contentType: 'text/javascript; charset=utf-8' },
  { route: '/board.js', file: 'board.js', contentType: 'text/javascript; charset=utf-8' },
  { route: '/drawer.js', file: 'drawer.js', contentType: 'text/javascript; charset=utf-8' },
  { route: '/style.css', file: 'style.css', contentType: 'text/css; charset=utf-8' },
];

/** The most the page's files may weigh together (the page works offline, on a phone). */
export const PAGE_WEIGHT_LIMIT = 300 * 1024;

export interface LoadedAsset extends AssetSpec {
  body: Buffer;
  etag: string;
}

/** The folder of the page's files (web/public, next to dist/). */
export const PUBLIC_DIR = fileURLToPath(new URL('../public/', import.meta.url));

/** Read every asset (throws naming a missing file, or a page heavier than PAGE_WEIGHT_LIMIT). */
export function loadAssets(dir = PUBLIC_DIR): LoadedAsset[] {
  const out = ASSETS.map((a) => {
    const body = readFileSync(`${dir}${a.file}`);
    return { ...a, body, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` };
  });
  const total = out.reduce((n, a) => n + a.body.length, 0);
  if (total > PAGE_WEIGHT_LIMIT) throw new Error(`the page's files weigh ${total} bytes, more than ${PAGE_WEIGHT_LIMIT}`);
  return out;
}
