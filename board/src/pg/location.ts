/**
 * A PostgreSQL board's location: a `postgres://` or `postgresql://` URL, with the board's schema
 * (PostgreSQL schema name, default `kanban`) in its `schema` query parameter or an option.
 *
 * The password (from the URL; `PGPASSWORD` and `~/.pgpass` are the driver's business and never
 * reach us) must never appear in a message or a log: `location` is the URL with it masked, and
 * `scrub` removes it from any text that might carry it (driver errors quote connection strings).
 */
import { BoardPathError } from '../errors.js';

/** The schema a board lives in when the URL and the options name none. */
export const DEFAULT_PG_SCHEMA = 'kanban';

/** Lower-case identifiers only: they need no quoting in SQL, LISTEN or search_path. */
const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

export function isPgLocation(location: string): boolean {
  return /^postgres(ql)?:\/\//i.test(location);
}

export interface PgTarget {
  /** What the driver connects with (password included, `schema` removed): never print it. */
  connectionString: string;
  /** The URL with its password masked: for messages and logs. */
  location: string;
  schema: string;
  /** The URL's password, if any, to scrub from messages. */
  secret: string | null;
}

/** Parse a board URL; throws BoardPathError (a configuration error, exit 2) naming the masked URL. */
export function pgTarget(url: string, schemaOption?: string): PgTarget {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new BoardPathError(maskLoosely(url), 'is not a valid PostgreSQL URL');
  }
  const secret = u.password ? decodeURIComponent(u.password) : null;
  const schema = schemaOption ?? u.searchParams.get('schema') ?? DEFAULT_PG_SCHEMA;
  const shown = new URL(u.href);
  if (shown.password) shown.password = '***';
  if (schemaOption !== undefined) shown.searchParams.set('schema', schemaOption);
  const location = shown.href;
  if (!SCHEMA_NAME.test(schema)) {
    throw new BoardPathError(location, `names schema ${JSON.stringify(schema)}: use 1-63 lower-case letters, digits or '_', not starting with a digit`);
  }
  u.searchParams.delete('schema');
  return { connectionString: u.href, location, schema, secret };
}

/** A board URL as messages show it (password masked); a URL that does not parse, masked loosely. */
export function pgLocationLabel(url: string, schemaOption?: string): string {
  try {
    return pgTarget(url, schemaOption).location;
  } catch {
    return maskLoosely(url);
  }
}

/** Mask what looks like a password in a URL that did not parse (`user:secret@`). */
function maskLoosely(url: string): string {
  return url.replace(/^([a-z]+:\/\/[^:/@]*:)[^@]*@/i, '$1***@');
}

/** `text` with every occurrence of the password replaced (no-op without one). */
export function scrub(text: string, secret: string | null): string {
  if (!secret) return text;
  return text.split(secret).join('***').split(encodeURIComponent(secret)).join('***');
}
