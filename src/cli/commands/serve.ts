import { Gateway } from '../../main.js';
import { allowFlags, type Command } from '../args.js';

/** `portcullis serve --config FILE`: run the gateway until SIGTERM/SIGINT; SIGHUP reloads. */
export const run: Command = async (args, io) => {
  allowFlags(args, []);
  let gw: Gateway;
  try {
    gw = await Gateway.start({ configFile: args.config, env: io.env, announce: (l) => io.stderr.write(`${l}\n`) });
  } catch (e) {
    io.stderr.write(`portcullis serve: ${(e as Error).message}\n`);
    return 1;
  }
  process.on('SIGHUP', () => void gw.reload('SIGHUP'));
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  await gw.close();
  return 0;
};
