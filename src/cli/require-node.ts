/**
 * Refuses to run on a Node.js older than the one chunkvault supports, with a message that says
 * so, rather than failing later at whatever first needs the newer runtime (zstd in zlib, the
 * dependencies' own syntax). Imported first by the CLI, so it runs before anything else loads.
 */
export const MIN_NODE_MAJOR = 24;

const major = Number(process.versions.node.split('.')[0]);
if (major < MIN_NODE_MAJOR) {
  process.stderr.write(`chunkvault: needs Node.js ${MIN_NODE_MAJOR} or newer, and this is ${process.version} (${process.execPath}); see "Set-up" in README.md\n`);
  process.exit(2);
}
