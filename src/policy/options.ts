/**
 * `defaults` overlaid with the fields of `options` that are set: an option given as undefined
 * keeps its default, as a caller who spreads a partial config would expect.
 */
export function withDefaults<D extends object, O extends object>(defaults: D, options: O): D & O {
  const set = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
  return { ...defaults, ...set } as D & O;
}
