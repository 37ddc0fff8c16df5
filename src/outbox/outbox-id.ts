/** An outbox row id: digits, within PostgreSQL/MySQL BIGINT (and SQLite INTEGER). */
export function isOutboxId(value: unknown): boolean {
  const text = typeof value === 'number' && Number.isSafeInteger(value) ? String(value) : value;
  if (typeof text !== 'string' || !/^[0-9]{1,19}$/.test(text)) return false;
  return BigInt(text) <= 9223372036854775807n && BigInt(text) > 0n;
}
