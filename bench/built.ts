/**
 * replikit's clock interceptors as an application gets them: from the compiled package (dist/),
 * not from src/ through tsx, whose transform wraps every closure in a naming helper that costs a
 * few microseconds per call and would be charged to replikit. `npm run build` makes dist/.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type * as Clock from '../src/clock/index.js';
import type * as Interceptors from '../src/interceptors/index.js';

const DIST = fileURLToPath(new URL('../dist/', import.meta.url));

export async function loadBuiltClockInterceptors(): Promise<Interceptors.ClockInterceptors> {
  const clockPath = `${DIST}clock/index.js`;
  const interceptorsPath = `${DIST}interceptors/index.js`;
  if (!existsSync(interceptorsPath)) throw new Error(`${interceptorsPath} is missing: run \`npm run build\` first`);
  const clock = (await import(pathToFileURL(clockPath).href)) as typeof Clock;
  const interceptors = (await import(pathToFileURL(interceptorsPath).href)) as typeof Interceptors;
  return interceptors.createClockInterceptors({ clock: new clock.HybridLogicalClock(clock.systemWallClock) });
}
