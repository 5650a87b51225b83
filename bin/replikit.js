#!/usr/bin/env node
// The `replikit` command. The TypeScript sources are compiled to dist/ by `npm install` (the
// `prepare` script) or `npm run build`.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const entry = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
  process.stderr.write('replikit: dist/ is missing; run `npm install` or `npm run build` first\n');
  process.exit(2);
}
// grpc-js sends the peer's host as the TLS server name even when it is an IP address (peers are
// addressed as 127.0.0.1:7001 and their certificates carry SAN IP:...), which Node flags once per
// process as DEP0123. The certificate is still checked against the IP; the warning would only
// clutter the CLI's output and the node's JSON log lines.
const emitWarning = process.emitWarning;
process.emitWarning = function (warning, ...rest) {
  if (rest[1] === 'DEP0123' || (typeof rest[0] === 'object' && rest[0]?.code === 'DEP0123')) return;
  return emitWarning.call(process, warning, ...rest);
};
const { main } = await import(entry.href);
process.exitCode = await main(process.argv.slice(2));
