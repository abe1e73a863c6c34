/**
 * The metric and label names a PromQL expression reads: its selectors (metric name and label
 * matchers) and the labels of its by/without/on/ignoring/group_left/group_right lists. Enough
 * of PromQL for the expressions of deploy/ (no full parser: strings, ranges and Grafana's
 * $variables are skipped, functions and keywords told apart from metric names).
 */

export interface Matcher {
  label: string;
  op: '=' | '!=' | '=~' | '!~';
  value: string;
}

export interface Selector {
  metric: string;
  matchers: Matcher[];
}

export interface QueryNames {
  selectors: Selector[];
  /** Labels named in grouping and matching lists (by, without, on, ignoring, group_left, group_right). */
  groupingLabels: string[];
}

const GROUPING = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);
const KEYWORDS = new Set(['and', 'or', 'unless', 'offset', 'bool', 'atan2', 'inf', 'nan']);
/** Aggregation operators: `sum by (x) (...)` has no `(` right after the name, as a function has. */
const AGGREGATORS = new Set(['sum', 'min', 'max', 'avg', 'group', 'stddev', 'stdvar', 'count', 'count_values', 'bottomk', 'topk', 'quantile', 'limitk', 'limit_ratio']);
const TOKEN = /\s+|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|\[[^\]]*\]|\{[^}]*\}|\$\w+|[a-zA-Z_:][a-zA-Z0-9_:]*|\d+(?:\.\d+)?(?:e[+-]?\d+)?|./gy;
const MATCHER = /([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"/g;

/** Selectors and grouping labels of `expr`. Throws on a matcher block it cannot read. */
export function namesIn(expr: string): QueryNames {
  const tokens = (expr.match(TOKEN) ?? []).filter((t) => !/^\s+$/.test(t));
  const selectors: Selector[] = [];
  const groupingLabels: string[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    const next = tokens[i + 1];
    if (GROUPING.has(token) && next === '(') {
      for (i += 2; tokens[i] !== ')' && i < tokens.length; i++) if (tokens[i] !== ',') groupingLabels.push(tokens[i]!);
    } else if (token.startsWith('{')) {
      selectors.push({ metric: '', matchers: matchersOf(token) });
    } else if (/^[a-zA-Z_:]/.test(token) && next !== '(' && !KEYWORDS.has(token) && !(AGGREGATORS.has(token) && GROUPING.has(next ?? ''))) {
      const block = next?.startsWith('{') ? next : undefined;
      selectors.push({ metric: token, matchers: block ? matchersOf(block) : [] });
      if (block) i++;
    }
  }
  return { selectors, groupingLabels };
}

function matchersOf(block: string): Matcher[] {
  const inner = block.slice(1, -1);
  const matchers = [...inner.matchAll(MATCHER)].map(([, label, op, value]) => ({ label: label!, op: op as Matcher['op'], value: value! }));
  const rest = inner.replace(MATCHER, '').replace(/[\s,]/g, '');
  if (rest !== '') throw new Error(`cannot read the label matchers ${block}`);
  return matchers;
}
