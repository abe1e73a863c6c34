/**
 * Removes secrets from text before it is logged or recorded: signed-URL parameters,
 * connection-string keys and authorization headers, as cloud SDK error messages can carry.
 */
const SECRET_PATTERNS: RegExp[] = [
  /((?:^|[?&;\s])(?:sig|X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|X-Goog-Signature|X-Goog-Credential|access_token)=)[^&;\s"']+/gi,
  /((?:^|[;\s])(?:AccountKey|SharedAccessSignature)=)[^;\s"']+/gi,
  /((?:authorization|x-amz-security-token)["']?\s*[:=]\s*["']?)[^"',}\n]+/gi,
];

/** `text` with any signed-URL or connection-string secret replaced by "[redacted]". */
export function redactSecrets(text: string): string {
  return SECRET_PATTERNS.reduce((out, pattern) => out.replace(pattern, '$1[redacted]'), text);
}
