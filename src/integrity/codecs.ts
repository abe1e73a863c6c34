/**
 * Codecs old replicas are re-encoded with. Encoding and decoding are zlib streams, which
 * run on libuv's thread pool: compressing a large chunk never blocks the event loop.
 *
 * Every codec writes its standard format, so a compressed replica decodes with the usual
 * tools to the chunk's exact bytes: `gzip -d` (.gz), `brotli -d` (.br), `zstd -d` (.zst).
 */
import { Readable } from 'node:stream';
import zlib from 'node:zlib';

import { CODECS, type Codec } from '../domain/types.js';

export { CODECS, type Codec };

/** Suffix appended to a replica's data key for its compressed object. */
export const CODEC_SUFFIX: Readonly<Record<Codec, string>> = { gzip: '.gz', brotli: '.br', zstd: '.zst' };

/**
 * The levels `compression_level` may name per codec, and the one used when it names none.
 * zstd stops at 19: its levels 20-22 ("ultra") need windows of up to 128 MiB per stream,
 * which a worker compressing beside ingest should not spend. docs/BENCHMARKS.md has what
 * each level costs and gains on training data.
 */
export const CODEC_LEVELS: Readonly<Record<Codec, { min: number; max: number; default: number }>> = {
  gzip: { min: 1, max: 9, default: 6 },
  brotli: { min: 0, max: 11, default: 5 },
  zstd: { min: 1, max: 19, default: 3 },
};

/**
 * Output buffer of every codec stream. zlib's default (16 KiB) hands a 1 MiB chunk over in 64
 * thread-pool round trips, which held zstd decoding to ~200 MB/s here; 256 KiB gives ~750.
 */
const STREAM_CHUNK_BYTES = 256 * 1024;

/** Why `level` is not a level of `codec`, or undefined when it is. */
export function levelProblem(codec: Codec, level: number): string | undefined {
  const { min, max } = CODEC_LEVELS[codec];
  if (Number.isInteger(level) && level >= min && level <= max) return undefined;
  return `${level} is not a ${codec} level (${min}..${max})`;
}

/**
 * A stream that encodes with `codec` at `level` (its default when omitted). `sizeBytes`,
 * when known, is the input's exact length: zstd then sizes its tables to the input and
 * writes the length into the frame, which `zstd -l` shows and decoders use.
 */
export function encoder(codec: Codec, level = CODEC_LEVELS[codec].default, sizeBytes?: number): NodeJS.ReadWriteStream {
  const problem = levelProblem(codec, level);
  if (problem) throw new RangeError(problem);
  switch (codec) {
    case 'gzip':
      return zlib.createGzip({ level, chunkSize: STREAM_CHUNK_BYTES });
    case 'brotli':
      return zlib.createBrotliCompress({
        chunkSize: STREAM_CHUNK_BYTES,
        params: { [zlib.constants.BROTLI_PARAM_QUALITY]: level, ...(sizeBytes === undefined ? {} : { [zlib.constants.BROTLI_PARAM_SIZE_HINT]: sizeBytes }) },
      });
    case 'zstd':
      return zlib.createZstdCompress({
        chunkSize: STREAM_CHUNK_BYTES,
        // The frame's own checksum lets `zstd -d` outside chunkvault detect damage too (gzip
        // has its CRC-32; brotli's format has none).
        params: { [zlib.constants.ZSTD_c_compressionLevel]: level, [zlib.constants.ZSTD_c_checksumFlag]: 1 },
        ...(sizeBytes === undefined ? {} : { pledgedSrcSize: sizeBytes }),
      });
  }
}

function decoder(codec: Codec): NodeJS.ReadWriteStream {
  switch (codec) {
    case 'gzip':
      return zlib.createGunzip({ chunkSize: STREAM_CHUNK_BYTES });
    case 'brotli':
      return zlib.createBrotliDecompress({ chunkSize: STREAM_CHUNK_BYTES });
    case 'zstd':
      return zlib.createZstdDecompress({ chunkSize: STREAM_CHUNK_BYTES });
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
