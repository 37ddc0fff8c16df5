/** The two databases of a migration: the one being left and the one being adopted. */
export const STORE_NAMES = ['source', 'target'] as const;
export type StoreName = (typeof STORE_NAMES)[number];
