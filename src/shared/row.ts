/** A row as the drivers return it and the write path carries it: column name → value. */
export type Row = Record<string, unknown>;

/** Primary-key values in key order. */
export type KeyValues = readonly unknown[];
