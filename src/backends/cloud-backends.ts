/**
 * Every cloud backend chunkvault has, in the order its config blocks are documented. The
 * config schema, the routing of `cloud_provider`s and the start-up checks derive from this
 * list; a new cloud backend is its own file (with its kind) and one entry here.
 */
import { S3_BACKEND_KIND } from './s3.kind.js';
import { GCS_BACKEND_KIND } from './gcs.kind.js';
import { AZURE_BLOB_BACKEND_KIND } from './azure-blob.kind.js';

export const CLOUD_BACKEND_KINDS = [S3_BACKEND_KIND, GCS_BACKEND_KIND, AZURE_BLOB_BACKEND_KIND] as const;

/** A cloud backend's name: its config block and the backend its replicas record. */
export type CloudBackendName = (typeof CLOUD_BACKEND_KINDS)[number]['name'];

/** The cloud backends' names, in the list's order. */
export const CLOUD_BACKEND_NAMES: readonly CloudBackendName[] = CLOUD_BACKEND_KINDS.map((kind) => kind.name);

/** Where chunk bytes can be staged: the local directory, or the bucket of a cloud backend's block. */
export const STAGING_BACKENDS = ['local', ...CLOUD_BACKEND_NAMES] as const;
