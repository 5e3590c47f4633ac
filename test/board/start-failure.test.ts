/**
 * classifyStartFailure: how a failure to open a PostgreSQL board at a supervisor's start is met
 * (waited for, a configuration error, or anything else). Pure: errors built as the pg driver and
 * node's sockets make them (a SQLSTATE `code` with a `severity`; an errno `code`; a bare message).
 */
import { describe, expect, it } from 'vitest';
import { BoardPathError, SchemaTooNewError, WriteGroupLostError, classifyStartFailure } from '@kanban-supervisor/board';

/** A server error as pg's DatabaseError carries it. */
const server = (code: string, message = 'x') => Object.assign(new Error(message), { code, severity: 'FATAL' });
/** A socket error as node's net module makes it. */
const socket = (code: string) => Object.assign(new Error(`connect ${code} 127.0.0.1:5432`), { code, errno: -111, syscall: 'connect' });

describe('classifyStartFailure', () => {
  it.each([
    ['ECONNREFUSED', socket('ECONNREFUSED')],
    ['ECONNRESET', socket('ECONNRESET')],
    ['ETIMEDOUT', socket('ETIMEDOUT')],
    ['EHOSTUNREACH', socket('EHOSTUNREACH')],
    ['ENOTFOUND (a name not resolvable yet)', socket('ENOTFOUND')],
    ['EAI_AGAIN', socket('EAI_AGAIN')],
    ['57P03 cannot_connect_now (starting up)', server('57P03', 'the database system is starting up')],
    ['57P01 admin_shutdown', server('57P01')],
    ['53300 too_many_connections', server('53300', 'sorry, too many clients already')],
    ['08006 connection_failure', server('08006')],
    ['40001 serialization failure (a concurrent migration)', server('40001')],
    ['55P03 lock_not_available', server('55P03')],
    ['the driver timing out', new Error('timeout exceeded when trying to connect')],
    ['the server ending the connection', new Error('Connection terminated unexpectedly')],
    ['a wrapped lost connection', new WriteGroupLostError('postgres://h/db', socket('ECONNRESET'))],
  ])('%s is transient', (_what, e) => {
    expect(classifyStartFailure(e)).toBe('transient');
  });

  it.each([
    ['28P01 wrong password', server('28P01', 'password authentication failed for user "kanban"')],
    ['28000 no pg_hba entry', server('28000', 'no pg_hba.conf entry for host')],
    ['3D000 unknown database', server('3D000', 'database "nope" does not exist')],
    ['42501 insufficient privilege (CREATE SCHEMA)', server('42501', 'permission denied for database app')],
    ['a bad URL', new BoardPathError('postgres://h/[', 'is not a valid PostgreSQL URL')],
    ['no password for SCRAM', new Error('SASL: SCRAM-SERVER-FIRST-MESSAGE: client password must be a string')],
    ['TLS refused by the server', new Error('The server does not support SSL connections')],
    ['an untrusted certificate', Object.assign(new Error('self-signed certificate'), { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' })],
    ['EACCES (a socket folder)', socket('EACCES')],
  ])('%s is configuration (not retried)', (_what, e) => {
    expect(classifyStartFailure(e)).toBe('config');
  });

  it.each([
    ['a schema newer than this build', new SchemaTooNewError('postgres://h/db', 9, 2)],
    ['57P04 database dropped', server('57P04')],
    ['42P01 a missing table', server('42P01')],
    ['a bug', new TypeError('x is not a function')],
    ['not an error', 'boom'],
    ['null', null],
  ])('%s is fatal (thrown as it is)', (_what, e) => {
    expect(classifyStartFailure(e)).toBe('fatal');
  });
});
