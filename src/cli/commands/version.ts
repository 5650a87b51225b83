import { VERSION } from '../../version.js';
import type { Command } from '../main.js';

export const versionCommand: Command = {
  summary: 'print the replikit version',
  usage: 'usage: replikit version',
  async run() {
    process.stdout.write(`replikit ${VERSION}\n`);
    return 0;
  },
};
