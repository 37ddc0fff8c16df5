/** A change's version `(epoch, seq)`: `seq` is the outbox row id, as decimal text. */
export interface Version {
  epoch: number;
  seq: string;
}

/** Compares versions `(epoch, seq)`; seq compared as a big integer. */
export function compareVersion(a: Version, b: Version): number {
  if (a.epoch !== b.epoch) return a.epoch < b.epoch ? -1 : 1;
  const x = BigInt(a.seq);
  const y = BigInt(b.seq);
  return x === y ? 0 : x < y ? -1 : 1;
}
