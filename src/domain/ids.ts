/**
 * Ids (chunk, replica, task, node, cloud) become storage keys, file names and BullMQ job ids,
 * so they are held to a charset that is safe in all three: no path separators, no `..`,
 * no ':' (BullMQ). They start with a letter or digit, which keeps hidden/temp names and the
 * reserved `_chunkvault/` prefix (checkpoints) out of reach of any replica's storage key.
 */
import { z } from 'zod';

export const MAX_ID_LENGTH = 128;
export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** zod schema of an id; its messages name what is wrong. */
export const idSchema = z
  .string({ error: 'must be a string' })
  .min(1, 'must not be empty')
  .max(MAX_ID_LENGTH, `must be at most ${MAX_ID_LENGTH} characters`)
  // Patterns rather than refinements, so the published JSON Schemas (docs/) carry every rule.
  .regex(/^[^/\\]*$/, 'must not contain a path separator')
  .regex(/^(?!.*\.\.)/, 'must not contain ".."')
  .regex(ID_PATTERN, 'may hold only letters, digits, "_", "." and "-", and must start with a letter or digit');

/**
 * zod schema of a replica id: an id that does not end with ".", since its data object is
 * named `<replicaId>.dat` and a name holding ".." is refused as a storage key (such a replica
 * could never be stored).
 */
export const replicaIdSchema = idSchema.regex(/[^.]$/, 'must not end with "." (its file name <id>.dat would hold "..")');
