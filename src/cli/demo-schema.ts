import type { Store } from '../db/store.js';

/**
 * The embedded demo's tables: `users` in the source and `app_users` in the target, whose
 * columns are renamed (full_name → name, created_date → created_at) and which drops
 * legacy_flags — see policies/users.yaml. Created only when missing.
 */
export async function createDemoSchema(source: Store, target: Store): Promise<void> {
  if (!(await source.knex.schema.hasTable('users'))) {
    await source.knex.schema.createTable('users', (t) => {
      t.increments('id').primary();
      t.string('email', 255).notNullable().unique();
      t.string('full_name', 200);
      t.string('created_date', 40);
      t.string('legacy_flags', 50);
    });
  }
  if (!(await target.knex.schema.hasTable('app_users'))) {
    await target.knex.schema.createTable('app_users', (t) => {
      t.integer('id').primary();
      t.string('email', 255).notNullable().unique();
      t.string('name', 200);
      t.string('created_at', 40);
    });
  }
}
