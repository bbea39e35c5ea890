/**
 * Headless Debian Chromium driven by playwright-core, for tests of what a person sees in a browser
 * (login form, MFA, enrolment QR code, redirects, cookies).
 *
 *   test('...', { skip: chromiumSkip() }, async (t) => {
 *     const browser = await launchChromium();
 *     t.after(() => browser.close());
 *     const page = await (await browser.newContext()).newPage();
 *   });
 *
 * playwright-core never downloads a browser; it runs the system's /usr/bin/chromium. The flags
 * keep Chromium off the network (this machine has none but loopback) and working as root.
 */
import { chromium, type Browser, type LaunchOptions } from 'playwright-core';
import { findBinary, noteSkip } from './tmp.js';

const CHROMIUM = findBinary('chromium', ['/usr/bin/chromium', '/usr/lib/chromium/chromium']);

export const CHROMIUM_ARGS: readonly string[] = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export function haveChromium(): boolean {
  return CHROMIUM !== null;
}

/** For node:test's `skip` option; throws in CI when Chromium is missing (see `toolSkip`); outside CI a summary line at exit says what was skipped (`noteSkip`). */
export function chromiumSkip(): false | string {
  return noteSkip('chromium', haveChromium());
}

/**
 * Starts headless Chromium. Each `browser.newContext()` is a fresh profile (no cookies); close
 * the browser when done. `opts` are merged over the defaults (extra `args` are appended).
 */
export async function launchChromium(opts: LaunchOptions = {}): Promise<Browser> {
  if (!CHROMIUM) throw new Error('chromium is not installed (scripts/install-test-deps.sh installs it)');
  return chromium.launch({
    headless: true,
    timeout: 30_000,
    ...opts,
    executablePath: opts.executablePath ?? CHROMIUM,
    args: [...CHROMIUM_ARGS, ...(opts.args ?? [])],
  });
}
