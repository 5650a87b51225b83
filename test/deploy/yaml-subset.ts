/**
 * A reader for the small subset of YAML that the Kubernetes manifests in deploy/ are written in,
 * so their test checks structure rather than lines without a YAML dependency. The subset:
 * documents separated by `---`; `#` comments on their own lines; block mappings `key: value` and
 * `key:` followed by a deeper block or by a sequence at the same indentation; block sequences
 * `- value` and `- key: value` (a mapping item); scalars plain, "double-quoted" (JSON) or
 * 'single-quoted', with integers and true/false typed; flow sequences written as JSON arrays.
 * Anything else (anchors, block scalars, flow mappings, tabs, inline comments) is refused with
 * the line number, so a manifest cannot drift outside what this reader understands.
 */

export type YamlValue = string | number | boolean | null | YamlValue[] | { [key: string]: YamlValue };

interface Line {
  readonly indent: number;
  readonly text: string;
  readonly number: number;
}

/** The documents of a multi-document YAML text; empty documents (comments only) are left out. */
export function parseYamlDocuments(source: string): YamlValue[] {
  const documents: Line[][] = [[]];
  source.split('\n').forEach((raw, i) => {
    if (raw.includes('\t')) throw new Error(`line ${i + 1}: tabs are outside the YAML subset`);
    const text = raw.trimEnd();
    if (text === '---') {
      documents.push([]);
      return;
    }
    const trimmed = text.trimStart();
    if (trimmed === '' || trimmed.startsWith('#')) return;
    if (/\s#/.test(trimmed.replace(/"[^"]*"|'[^']*'/g, ''))) throw new Error(`line ${i + 1}: inline comments are outside the YAML subset`);
    documents.at(-1)!.push({ indent: text.length - trimmed.length, text: trimmed, number: i + 1 });
  });
  return documents
    .filter((lines) => lines.length > 0)
    .map((lines) => {
      const reader = { lines, at: 0 };
      const value = parseBlock(reader, lines[0]!.indent);
      if (reader.at < lines.length) throw new Error(`line ${lines[reader.at]!.number}: unexpected indentation`);
      return value;
    });
}

interface Reader {
  lines: Line[];
  at: number;
}

const KEY = /^([A-Za-z0-9_./-]+|"[^"]*"):(?: (.*))?$/;

function isItem(line: Line): boolean {
  return line.text === '-' || line.text.startsWith('- ');
}

function parseBlock(r: Reader, indent: number): YamlValue {
  const line = r.lines[r.at]!;
  if (line.indent !== indent) throw new Error(`line ${line.number}: expected indentation ${indent}, found ${line.indent}`);
  return isItem(line) ? parseSequence(r, indent) : parseMapping(r, indent);
}

function parseMapping(r: Reader, indent: number): { [key: string]: YamlValue } {
  const map: { [key: string]: YamlValue } = {};
  while (r.at < r.lines.length) {
    const line = r.lines[r.at]!;
    if (line.indent < indent) break;
    if (line.indent > indent) throw new Error(`line ${line.number}: unexpected indentation`);
    if (isItem(line)) break;
    const m = KEY.exec(line.text);
    if (m === null) throw new Error(`line ${line.number}: expected "key: value", found ${JSON.stringify(line.text)}`);
    const key = m[1]!.startsWith('"') ? (JSON.parse(m[1]!) as string) : m[1]!;
    if (key in map) throw new Error(`line ${line.number}: key ${key} appears twice`);
    r.at++;
    const rest = m[2]?.trim() ?? '';
    if (rest !== '') {
      map[key] = scalar(rest, line.number);
      continue;
    }
    const next = r.lines[r.at];
    if (next !== undefined && next.indent > indent) map[key] = parseBlock(r, next.indent);
    else if (next !== undefined && next.indent === indent && isItem(next)) map[key] = parseSequence(r, indent);
    else map[key] = null;
  }
  return map;
}

function parseSequence(r: Reader, indent: number): YamlValue[] {
  const list: YamlValue[] = [];
  while (r.at < r.lines.length) {
    const line = r.lines[r.at]!;
    if (line.indent !== indent || !isItem(line)) break;
    const rest = line.text.slice(1).trimStart();
    if (rest === '') {
      r.at++;
      const next = r.lines[r.at];
      list.push(next !== undefined && next.indent > indent ? parseBlock(r, next.indent) : null);
    } else if (KEY.test(rest)) {
      // `- key: value`: a mapping whose first key sits after the dash, the others under it.
      const itemIndent = indent + (line.text.length - rest.length);
      r.lines[r.at] = { indent: itemIndent, text: rest, number: line.number };
      list.push(parseMapping(r, itemIndent));
    } else {
      r.at++;
      list.push(scalar(rest, line.number));
    }
  }
  return list;
}

function scalar(text: string, lineNumber: number): YamlValue {
  if (text.startsWith('"')) return JSON.parse(text) as string;
  if (text.startsWith("'")) {
    if (!text.endsWith("'") || text.length < 2) throw new Error(`line ${lineNumber}: unterminated quoted string`);
    return text.slice(1, -1).replace(/''/g, "'");
  }
  if (text.startsWith('[')) return JSON.parse(text) as YamlValue[];
  if (/^[&*!|>{%@`]/.test(text)) throw new Error(`line ${lineNumber}: ${JSON.stringify(text)} is outside the YAML subset`);
  if (text === 'true' || text === 'false') return text === 'true';
  if (text === 'null' || text === '~') return null;
  if (/^-?\d+$/.test(text)) return Number(text);
  if (/: |:$/.test(text)) throw new Error(`line ${lineNumber}: a plain scalar with ": " is outside the YAML subset`);
  return text;
}
