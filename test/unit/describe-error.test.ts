import { describe, expect, it } from 'vitest';
import { describeDbError } from '../../src/db/describe-error.js';

const knexed = (sql: string, message: string, fields: Record<string, unknown>) => Object.assign(new Error(`${sql} - ${message}`), fields);

describe('describeDbError: code, kind and schema objects, never row values', () => {
  it('MySQL duplicate entry: the value quoted by the server and the statement knex prepends are dropped', () => {
    const e = knexed("insert into `people` (`email`) values ('alice@example.com')", "Duplicate entry 'alice@example.com' for key 'email'", {
      code: 'ER_DUP_ENTRY',
      sqlMessage: "Duplicate entry 'alice@example.com' for key 'email'",
    });
    const text = describeDbError(e);
    expect(text).toBe('ER_DUP_ENTRY (unique)');
    expect(text).not.toContain('alice');
  });
  it('MySQL CHECK violation keeps the constraint name', () => {
    const e = knexed("insert into `t` values ('secret')", 'CONSTRAINT `t_chk` failed for `db`.`t`', { code: 'ER_CHECK_CONSTRAINT_VIOLATED', sqlMessage: 'CONSTRAINT `t_chk` failed for `db`.`t`' });
    expect(describeDbError(e)).toBe('ER_CHECK_CONSTRAINT_VIOLATED (check): CONSTRAINT `t_chk` failed for `db`.`t`');
  });
  it('PostgreSQL: the message without the statement; class 22 messages (which quote values) dropped', () => {
    const check = knexed('insert into "t" ("v") values ($1)', 'new row for relation "t" violates check constraint "t_v_check"', { code: '23514', table: 't', constraint: 't_v_check', detail: 'Failing row contains (secret).' });
    expect(describeDbError(check)).toBe('23514 (check): table t: constraint t_v_check: new row for relation "t" violates check constraint "t_v_check"');
    const data = knexed('insert into "t" ("n") values ($1)', 'invalid input syntax for type integer: "secret"', { code: '22P02' });
    expect(describeDbError(data)).toBe('22P02 (data)');
  });
  it('an error without a code: its class name only, unless Tandem made it', () => {
    expect(describeDbError(new Error("insert into x values ('secret')"))).toBe('Error (unknown; message withheld: it may hold row values)');
    expect(describeDbError(Object.assign(new Error('target: no answer within 500 ms'), { name: 'DeadlineError' }))).toBe('DeadlineError: target: no answer within 500 ms');
  });
});
