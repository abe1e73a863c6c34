/**
 * HTML for the dashboard's own page, escaped by construction: the `html` template escapes
 * every interpolated value unless it is itself `html` output, so a value can never become
 * markup by being forgotten. No build step, no client-side script.
 */

/** Markup that is safe to insert as it is (built by `html`). */
export class SafeHtml {
  constructor(readonly markup: string) {}

  toString(): string {
    return this.markup;
  }
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** `text` with the five characters that can open markup or leave an attribute escaped. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

/**
 * Tagged template: `html\`<td>${value}</td>\``. Strings, numbers and anything else are
 * escaped; SafeHtml and arrays of it are inserted as they are; null, undefined and false
 * insert nothing.
 */
export function html(strings: TemplateStringsArray, ...values: unknown[]): SafeHtml {
  let out = strings[0]!;
  values.forEach((value, i) => {
    out += render(value) + strings[i + 1]!;
  });
  return new SafeHtml(out);
}

function render(value: unknown): string {
  if (value instanceof SafeHtml) return value.markup;
  if (Array.isArray(value)) return value.map(render).join('');
  if (value === null || value === undefined || value === false) return '';
  return escapeHtml(String(value));
}
