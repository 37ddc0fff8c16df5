import { expect } from 'vitest';
import { TandemError } from '../../src/errors.js';

/** Runs `fn`, expects a TandemError and returns it for closer inspection. */
export function catchTandemError(fn: () => unknown): TandemError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(TandemError);
    return error as TandemError;
  }
  throw new Error('expected a TandemError, nothing was thrown');
}
