/**
 * Storage keys are relative, '/'-separated paths. A key that could escape a backend's root
 * or name a hidden/temp file is refused before any backend sees it.
 */
import { InvalidInputError } from '../errors.js';

const SEGMENT = /^[A-Za-z0-9_][A-Za-z0-9_.@#=-]*$/;

/** Throws InvalidInputError unless `key` is a safe relative key (no '..', no absolute path, no empty or hidden segment). */
export function assertSafeKey(key: string): void {
  if (typeof key !== 'string' || key.length === 0 || key.length > 1024) {
    throw new InvalidInputError(`storage key ${JSON.stringify(key)}: must be 1-1024 characters`);
  }
  for (const segment of key.split('/')) {
    if (segment === '..' || segment === '.' || segment.includes('..') || !SEGMENT.test(segment)) {
      throw new InvalidInputError(`storage key ${JSON.stringify(key)}: segment ${JSON.stringify(segment)} is not allowed`);
    }
  }
}
