/**
 * The package's version, read from its package.json at run time (the built file is
 * `dist/src/cli/version.js`, three directories below the package root, in a checkout, a global
 * install and the container image alike).
 */
import { readFileSync } from 'node:fs';

let cached: string | null = null;

export function packageVersion(): string {
  if (cached === null) {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    if (typeof pkg.version !== 'string') throw new Error('package.json has no version');
    cached = pkg.version;
  }
  return cached;
}
