/**
 * What each compression codec and level costs and gains on training data, through the same
 * encoder and decoder streams the compression pass uses (src/integrity/codecs.ts), chunk by
 * chunk as the pass compresses replicas.
 *
 *   npm run bench:codecs -- [--mib=8] [--chunk-kib=1024] [--runs=3]
 *   npm run bench:codecs -- --buffers     the codec streams' buffer size, paired (see compareBuffers)
 *
 * Data (each --mib MiB, cut into chunks of --chunk-kib KiB, made from fixed seeds, so the same on every run):
 *   float32  activations/embeddings: float32 values drawn from N(0, 1), little-endian
 *   tokens   int32 token ids of real text (the corpus below split into words and
 *            punctuation, ids ranked by frequency), so the ids repeat as real tokens do
 *   text     English prose and code: the Markdown files of the installed node_modules
 *   jpeg     JPEG photographs-like images (fractal noise, quality 90) encoded by jpeg-js
 *
 * Each run measures every codec and level on every data set, in an order rotated run by run,
 * so a slow minute of the machine falls on all of them alike; the table is the median of the
 * runs. compress MB/s = input MB per second of encoding; decode MB/s = output MB per second.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import jpeg from 'jpeg-js';
import { CODEC_LEVELS, type Codec, decoded, encoder } from '../src/integrity/codecs.js';
import { mulberry32 } from '../test/support/random.js';

const flags = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=') as [string, string]));
const totalBytes = Number(flags.mib ?? 8) * 1024 * 1024;
const chunkBytes = Number(flags['chunk-kib'] ?? 1024) * 1024;
const runs = Number(flags.runs ?? 3);

const LEVELS: ReadonlyArray<readonly [Codec, number]> = [
  ['gzip', 1], ['gzip', 6], ['gzip', 9],
  ['brotli', 1], ['brotli', 5], ['brotli', 9], ['brotli', 11],
  ['zstd', 1], ['zstd', 3], ['zstd', 6], ['zstd', 9], ['zstd', 15], ['zstd', 19],
];

function float32Data(bytes: number): Buffer {
  const next = mulberry32(1);
  const values = new Float32Array(bytes / 4);
  for (let i = 0; i < values.length; i += 2) {
    // Box-Muller: two normal values from two uniform ones.
    const r = Math.sqrt(-2 * Math.log(next() || 1e-12));
    const theta = 2 * Math.PI * next();
    values[i] = r * Math.cos(theta);
    if (i + 1 < values.length) values[i + 1] = r * Math.sin(theta);
  }
  return Buffer.from(values.buffer);
}

function markdownFiles(dir: string, found: string[] = []): string[] {
  for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) markdownFiles(full, found);
    else if (entry.isFile() && entry.name.toLowerCase().endsWith('.md') && statSync(full).size > 2048) found.push(full);
  }
  return found;
}

/** Every Markdown file of node_modules over 2 KiB, in path order: prose and code, as a corpus. */
function corpus(): Buffer {
  return Buffer.concat(markdownFiles(path.resolve('node_modules')).map((file) => readFileSync(file)));
}

function textData(bytes: number, all: Buffer): Buffer {
  if (all.byteLength < bytes) throw new Error(`node_modules holds only ${all.byteLength} bytes of Markdown; run with a smaller --mib`);
  return all.subarray(0, bytes);
}

/** The corpus as word-level token ids, in its own order (no token stream repeats). */
function tokenData(bytes: number, all: Buffer): Buffer {
  const words = all.toString('utf8').match(/\w+|[^\w\s]/g) ?? [];
  const tokens = new Int32Array(bytes / 4);
  if (words.length < tokens.length) throw new Error(`the corpus has ${words.length} tokens, fewer than ${tokens.length}; run with a smaller --mib`);
  const counts = new Map<string, number>();
  for (const word of words) counts.set(word, (counts.get(word) ?? 0) + 1);
  const ids = new Map([...counts].sort((a, b) => b[1] - a[1]).map(([word], id) => [word, id]));
  for (let i = 0; i < tokens.length; i++) tokens[i] = ids.get(words[i]!)!;
  return Buffer.from(tokens.buffer);
}

/** Value noise over a few octaves: smooth regions and fine detail, as photographs have. */
function jpegData(bytes: number): Buffer {
  const next = mulberry32(7);
  const side = 512;
  const images: Buffer[] = [];
  let size = 0;
  while (size < bytes) {
    const grids = [4, 16, 64, 256].map((cells) => ({ cells, values: Float32Array.from({ length: (cells + 1) * (cells + 1) * 3 }, next) }));
    const pixels = Buffer.alloc(side * side * 4);
    for (let y = 0; y < side; y++) {
      for (let x = 0; x < side; x++) {
        for (let channel = 0; channel < 3; channel++) {
          let value = 0;
          let weight = 0.5;
          for (const { cells, values } of grids) {
            const gx = (x / side) * cells;
            const gy = (y / side) * cells;
            const x0 = Math.floor(gx);
            const y0 = Math.floor(gy);
            const at = (cx: number, cy: number) => values[(cy * (cells + 1) + cx) * 3 + channel]!;
            const fx = gx - x0;
            const fy = gy - y0;
            const top = at(x0, y0) * (1 - fx) + at(x0 + 1, y0) * fx;
            const bottom = at(x0, y0 + 1) * (1 - fx) + at(x0 + 1, y0 + 1) * fx;
            value += weight * (top * (1 - fy) + bottom * fy);
            weight /= 2;
          }
          pixels[(y * side + x) * 4 + channel] = Math.min(255, Math.round(value * 272));
        }
        pixels[(y * side + x) * 4 + 3] = 255;
      }
    }
    const image = jpeg.encode({ data: pixels, width: side, height: side }, 90).data;
    images.push(Buffer.from(image));
    size += image.byteLength;
  }
  // Whole JPEG files back to back, cut at the size: a chunk holds images, as a shard of them would.
  return Buffer.concat(images).subarray(0, bytes);
}

async function collect(source: Readable): Promise<Buffer> {
  const pieces: Buffer[] = [];
  await pipeline(source, new Writable({ write(piece: Buffer, _e, done) { pieces.push(piece); done(); } }));
  return Buffer.concat(pieces);
}

interface Measure { compressSeconds: number; decodeSeconds: number; storedBytes: number }

async function measure(data: Buffer, codec: Codec, level: number): Promise<Measure> {
  const result: Measure = { compressSeconds: 0, decodeSeconds: 0, storedBytes: 0 };
  for (let offset = 0; offset < data.byteLength; offset += chunkBytes) {
    const chunk = data.subarray(offset, offset + chunkBytes);
    let started = performance.now();
    const stored = await collect(Readable.from([chunk]).pipe(encoder(codec, level, chunk.byteLength)) as unknown as Readable);
    result.compressSeconds += (performance.now() - started) / 1000;
    started = performance.now();
    const back = await collect(decoded(Readable.from([stored]), codec));
    result.decodeSeconds += (performance.now() - started) / 1000;
    if (!back.equals(chunk)) throw new Error(`${codec} ${level} did not decode to its input`);
    result.storedBytes += stored.byteLength;
  }
  return result;
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
};

/**
 * `--buffers`: what the codec streams' output buffer size does to decoding, paired and
 * alternating: zlib's default 16 KiB against the 256 KiB chunkvault's streams use, on 1 MiB
 * chunks of the text corpus, 5 rounds of 40 decodes each, medians.
 */
async function compareBuffers(chunk: Buffer): Promise<void> {
  const codecs = {
    zstd: { encode: (b: Buffer) => zlib.zstdCompressSync(b), decoder: (chunkSize: number) => zlib.createZstdDecompress({ chunkSize }) },
    gzip: { encode: (b: Buffer) => zlib.gzipSync(b), decoder: (chunkSize: number) => zlib.createGunzip({ chunkSize }) },
    brotli: { encode: (b: Buffer) => zlib.brotliCompressSync(b, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 5 } }), decoder: (chunkSize: number) => zlib.createBrotliDecompress({ chunkSize }) },
  };
  const rates = new Map<string, number[]>();
  for (let round = 0; round < 5; round++) {
    for (const [name, { encode, decoder }] of Object.entries(codecs)) {
      const stored = encode(chunk);
      for (const chunkSize of round % 2 ? [256 * 1024, 16 * 1024] : [16 * 1024, 256 * 1024]) {
        const started = performance.now();
        for (let i = 0; i < 40; i++) await pipeline(Readable.from([stored]), decoder(chunkSize), new Writable({ write(_p, _e, done) { done(); } }));
        const key = `${name} ${chunkSize / 1024} KiB`;
        rates.set(key, [...(rates.get(key) ?? []), (40 * chunk.byteLength) / 1e6 / ((performance.now() - started) / 1000)]);
      }
    }
  }
  for (const [key, values] of rates) console.log(`${key.padEnd(16)} decode ${median(values).toFixed(0).padStart(5)} MB/s (${Math.min(...values).toFixed(0)}-${Math.max(...values).toFixed(0)})`);
}

if ('buffers' in flags) {
  await compareBuffers(corpus().subarray(0, 1024 * 1024));
  process.exit(0);
}

for (const [codec, level] of LEVELS) {
  const { min, max } = CODEC_LEVELS[codec];
  if (level < min || level > max) throw new Error(`bench names ${codec} ${level}, outside ${min}..${max}`);
}

const all = corpus();
const sets: Record<string, Buffer> = { float32: float32Data(totalBytes), tokens: tokenData(totalBytes, all), text: textData(totalBytes, all), jpeg: jpegData(totalBytes) };
console.log(`node ${process.version}; ${Object.keys(sets).length} data sets of ${totalBytes / 1048576} MiB in ${chunkBytes / 1024} KiB chunks; ${runs} runs, median`);

const results = new Map<string, Measure[]>();
for (let run = 0; run < runs; run++) {
  const order = LEVELS.map((_, i) => LEVELS[(i + run * 5) % LEVELS.length]!);
  for (const [codec, level] of order) {
    for (const [name, data] of Object.entries(sets)) {
      const key = `${codec}\t${level}\t${name}`;
      results.set(key, [...(results.get(key) ?? []), await measure(data, codec, level)]);
    }
  }
  process.stderr.write(`run ${run + 1}/${runs} done\n`);
}

const mb = totalBytes / 1e6;
console.log('\n| codec | level | ' + Object.keys(sets).map((name) => `${name}: ratio, compress MB/s, decode MB/s`).join(' | ') + ' |');
console.log('|---|---|' + Object.keys(sets).map(() => '---|').join(''));
for (const [codec, level] of LEVELS) {
  const cells = Object.keys(sets).map((name) => {
    const measures = results.get(`${codec}\t${level}\t${name}`)!;
    const ratio = measures[0]!.storedBytes / totalBytes;
    const compress = median(measures.map((m) => mb / m.compressSeconds));
    const decode = median(measures.map((m) => mb / m.decodeSeconds));
    return `${ratio.toFixed(3)}, ${compress.toFixed(0)}, ${decode.toFixed(0)}`;
  });
  console.log(`| ${codec} | ${level} | ${cells.join(' | ')} |`);
}
