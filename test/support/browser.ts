/**
 * A real browser for the dashboard tests: Debian's chromium driven by playwright-core
 * (playwright's own browser download is not used). A missing chromium fails the test with
 * what to install; it never turns into a skip.
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

/** CHROMIUM_PATH, else Debian's /usr/bin/chromium. */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `the dashboard browser test needs chromium at ${CHROMIUM_PATH} and there is none: ` +
        'install it with `apt-get install chromium` (bash .ci/run does), or point CHROMIUM_PATH at a Chromium binary',
    );
  }
  // Chromium refuses to start its sandbox as root (CI containers).
  const args = process.getuid?.() === 0 ? ['--no-sandbox'] : [];
  return chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args });
}
