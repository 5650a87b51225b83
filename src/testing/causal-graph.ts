/**
 * The graph the causal checker orders operations with: one node per operation, edges labelled by
 * why one operation precedes another. Built once into flat arrays (compressed sparse rows); the
 * algorithms on it are iterative, so a session of a hundred thousand operations cannot overflow
 * the stack.
 */

/** `from` comes before `to` in one session. */
export const LINK_SESSION = 1;
/** `to` is a read that returned what `from` wrote. */
export const LINK_READS_FROM = 2;
/**
 * `to` (a write) must win over `from` (a concurrent write to the same key) in the store's one
 * order of conflicting writes, because a read returned `to` with `from` in its causal past.
 */
export const LINK_CONFLICT = 3;

export interface Graph {
  readonly nodes: number;
  /** Node `v`'s edges are `start[v]` up to `start[v + 1]`. */
  readonly start: Int32Array;
  readonly to: Int32Array;
  readonly link: Uint8Array;
  /** For a conflict edge, the read that implies it; -1 otherwise. */
  readonly witness: Int32Array;
}

/** Collects edges, then lays them out as a {@link Graph}. */
export class GraphBuilder {
  #from: number[] = [];
  #to: number[] = [];
  #link: number[] = [];
  #witness: number[] = [];

  add(from: number, to: number, link: number, witness = -1): void {
    this.#from.push(from);
    this.#to.push(to);
    this.#link.push(link);
    this.#witness.push(witness);
  }

  build(nodes: number): Graph {
    const m = this.#from.length;
    const start = new Int32Array(nodes + 1);
    for (const f of this.#from) start[f + 1]!++;
    for (let v = 0; v < nodes; v++) start[v + 1]! += start[v]!;
    const fill = start.slice(0, nodes);
    const to = new Int32Array(m);
    const link = new Uint8Array(m);
    const witness = new Int32Array(m);
    for (let e = 0; e < m; e++) {
      const slot = fill[this.#from[e]!]!++;
      to[slot] = this.#to[e]!;
      link[slot] = this.#link[e]!;
      witness[slot] = this.#witness[e]!;
    }
    return { nodes, start, to, link, witness };
  }
}

/**
 * Tarjan's strongly connected components. Returns each node's component number and each
 * component's size; a component of more than one node holds a cycle (there are no self-loops).
 */
export function stronglyConnected(g: Graph): { readonly component: Int32Array; readonly sizes: readonly number[] } {
  const n = g.nodes;
  const index = new Int32Array(n).fill(-1);
  const low = new Int32Array(n);
  const onStack = new Uint8Array(n);
  const component = new Int32Array(n).fill(-1);
  const sizes: number[] = [];
  const stack: number[] = [];
  // The explicit call stack: a node and the next of its edges to visit.
  const callNode = new Int32Array(n);
  const callEdge = new Int32Array(n);
  let counter = 0;
  for (let root = 0; root < n; root++) {
    if (index[root] !== -1) continue;
    let depth = 0;
    callNode[0] = root;
    callEdge[0] = g.start[root]!;
    index[root] = low[root] = counter++;
    stack.push(root);
    onStack[root] = 1;
    while (depth >= 0) {
      const v = callNode[depth]!;
      const e = callEdge[depth]!;
      if (e < g.start[v + 1]!) {
        callEdge[depth] = e + 1;
        const w = g.to[e]!;
        if (index[w] === -1) {
          index[w] = low[w] = counter++;
          stack.push(w);
          onStack[w] = 1;
          depth++;
          callNode[depth] = w;
          callEdge[depth] = g.start[w]!;
        } else if (onStack[w] === 1 && index[w]! < low[v]!) {
          low[v] = index[w]!;
        }
        continue;
      }
      if (low[v] === index[v]) {
        const c = sizes.length;
        let size = 0;
        let w: number;
        do {
          w = stack.pop()!;
          onStack[w] = 0;
          component[w] = c;
          size++;
        } while (w !== v);
        sizes.push(size);
      }
      depth--;
      if (depth >= 0) {
        const parent = callNode[depth]!;
        if (low[v]! < low[parent]!) low[parent] = low[v]!;
      }
    }
  }
  return { component, sizes };
}

/**
 * The nodes for which `include` holds, in an order that respects every edge among them (Kahn's
 * algorithm); among the nodes ready at once, the one with the smallest `priority` goes first.
 * The graph restricted to those nodes must be acyclic.
 */
export function topologicalOrder(g: Graph, include: Uint8Array, priority: (v: number) => number): Int32Array {
  const n = g.nodes;
  const inDegree = new Int32Array(n);
  let total = 0;
  for (let v = 0; v < n; v++) {
    if (include[v] === 0) continue;
    total++;
    for (let e = g.start[v]!; e < g.start[v + 1]!; e++) if (include[g.to[e]!] === 1) inDegree[g.to[e]!]!++;
  }
  const heap = new MinHeap((a, b) => priority(a) - priority(b) || a - b);
  for (let v = 0; v < n; v++) if (include[v] === 1 && inDegree[v] === 0) heap.push(v);
  const order = new Int32Array(total);
  let k = 0;
  while (heap.size > 0) {
    const v = heap.pop();
    order[k++] = v;
    for (let e = g.start[v]!; e < g.start[v + 1]!; e++) {
      const w = g.to[e]!;
      if (include[w] === 1 && --inDegree[w]! === 0) heap.push(w);
    }
  }
  if (k !== total) throw new Error(`internal error: the causal graph has a cycle left (${total - k} operations unordered)`);
  return order;
}

/**
 * The edges of a shortest path from `from` to `to` that stays among nodes of component `c`, as
 * edge slots in order; empty when `from === to`. The path must exist.
 */
export function pathWithin(g: Graph, component: Int32Array, c: number, from: number, to: number): number[] {
  if (from === to) return [];
  const viaEdge = new Map<number, number>([[from, -1]]);
  const queue = [from];
  for (let head = 0; head < queue.length && !viaEdge.has(to); head++) {
    const v = queue[head]!;
    for (let e = g.start[v]!; e < g.start[v + 1]!; e++) {
      const w = g.to[e]!;
      if (component[w] !== c || viaEdge.has(w)) continue;
      viaEdge.set(w, e);
      queue.push(w);
    }
  }
  if (!viaEdge.has(to)) throw new Error('internal error: no path inside a strongly connected component');
  const edges: number[] = [];
  for (let v = to; v !== from; ) {
    const e = viaEdge.get(v)!;
    edges.push(e);
    v = sourceOf(g, e);
  }
  return edges.reverse();
}

/** The node an edge slot leaves from. */
function sourceOf(g: Graph, e: number): number {
  // The largest v with start[v] <= e, by binary search.
  let lo = 0;
  let hi = g.nodes - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (g.start[mid]! <= e) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** A binary min-heap of numbers under a comparator. */
class MinHeap {
  readonly #items: number[] = [];

  constructor(readonly compare: (a: number, b: number) => number) {}

  get size(): number {
    return this.#items.length;
  }

  push(x: number): void {
    const a = this.#items;
    a.push(x);
    let i = a.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (this.compare(a[parent]!, a[i]!) <= 0) break;
      [a[parent], a[i]] = [a[i]!, a[parent]!];
      i = parent;
    }
  }

  pop(): number {
    const a = this.#items;
    const top = a[0]!;
    const last = a.pop()!;
    if (a.length > 0) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && this.compare(a[l]!, a[m]!) < 0) m = l;
        if (r < a.length && this.compare(a[r]!, a[m]!) < 0) m = r;
        if (m === i) break;
        [a[m], a[i]] = [a[i]!, a[m]!];
        i = m;
      }
    }
    return top;
  }
}
