/**
 * `portcullis schema`: print the configuration's JSON Schema on stdout (generated from
 * src/config/schema.ts), for editors that complete and validate the YAML. Reads no file.
 */
import { allowFlags, UsageError, type Command } from '../args.js';
import { configJsonSchemaText } from '../../config/schema-render.js';

export const run: Command = async (args, io) => {
  allowFlags(args, ['config']);
  if (args.positionals.length > 0) throw new UsageError('takes no arguments');
  io.stdout.write(configJsonSchemaText());
  return 0;
};
