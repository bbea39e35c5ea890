// Writes docs/configuration.md and docs/portcullis.schema.json from the config schema
// (src/config/schema.ts, built to dist/). Run by `npm run docs:config`;
// test/unit/config-schema.test.ts fails when either file is out of date.
import { writeFileSync } from 'node:fs';
import { configJsonSchemaText, configReference } from '../dist/src/config/schema-render.js';

writeFileSync(new URL('../docs/configuration.md', import.meta.url), configReference());
writeFileSync(new URL('../docs/portcullis.schema.json', import.meta.url), configJsonSchemaText());
console.log('docs/configuration.md and docs/portcullis.schema.json written');
