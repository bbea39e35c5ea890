// Writes docs/cli.md from the CLI's own help (src/cli/help.ts, built to dist/). Run by
// `npm run docs:cli`; test/unit/cli-docs.test.ts fails when the file is out of date.
import { writeFileSync } from 'node:fs';
import { markdownReference } from '../dist/src/cli/help.js';

writeFileSync(new URL('../docs/cli.md', import.meta.url), markdownReference());
console.log('docs/cli.md written');
