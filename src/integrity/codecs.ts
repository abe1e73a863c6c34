/**
 * Codecs old replicas are re-encoded with. Encoding and decoding are zlib streams, which
 * run on libuv's thread pool: compressing a large chunk never blocks the event loop.
 */
import { Readable } from 'node:stream';
import zlib from 'node:zlib';

export const CODECS = ['gzip', 'brotli', 'zstd'] as const;
export type Codec = (typeof CODECS)[number];

/** Suffix appended to a replica's data key for its compressed object. */
export const CODEC_SUFFIX: Readonly<Record<Codec, string>> = { gzip: '.gz', brotli: '.br', zstd: '.zst' };

type ZstdZlib = typeof zlib & { createZstdCompress?: () => NodeJS.ReadWriteStream; createZstdDecompress?: () => NodeJS.ReadWriteStream };

/** Whether this runtime can encode and decode `codec` (zstd needs a newer Node than 20). */
export function codecAvailable(codec: Codec): boolean {
  return codec !== 'zstd' || typeof (zlib as ZstdZlib).createZstdCompress === 'function';
}

export function encoder(codec: Codec): NodeJS.ReadWriteStream {
  switch (codec) {
    case 'gzip':
      return zlib.createGzip({ level: 6 });
    case 'brotli':
      return zlib.createBrotliCompress({ params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 5 } });
    case 'zstd':
      return (zlib as ZstdZlib).createZstdCompress!();
  }
}

function decoder(codec: Codec): NodeJS.ReadWriteStream {
  switch (codec) {
    case 'gzip':
      return zlib.createGunzip();
    case 'brotli':
      return zlib.createBrotliDecompress();
    case 'zstd':
      return (zlib as ZstdZlib).createZstdDecompress!();
  }
}

/** The stored bytes decoded to the chunk's bytes ('' = stored as is). */
export function decoded(stream: Readable, codec: Codec | ''): Readable {
  if (codec === '') return stream;
  const out = decoder(codec);
  stream.on('error', (error) => (out as unknown as Readable).destroy(error));
  return stream.pipe(out) as unknown as Readable;
}

/** The key without a codec suffix: the replica's uncompressed data key. */
export function withoutCodecSuffix(key: string): string {
  for (const suffix of Object.values(CODEC_SUFFIX)) if (key.endsWith(suffix)) return key.slice(0, -suffix.length);
  return key;
}
