/** A posted form (application/x-www-form-urlencoded, as fastify's formbody parses it). */
export type Form = Record<string, string | undefined>;

/**
 * The posted form, every field a single string; null when a field is repeated (`a=1&a=2` parses
 * to an array), is not a string, or is longer than `maxField`: no form of ours produces those, so
 * the caller answers 400, never a 500 further on.
 */
export function formOf(body: unknown, maxField = Infinity): Form | null {
  if (body === undefined || body === null) return {};
  if (typeof body !== 'object' || Array.isArray(body)) return null;
  const out: Form = {};
  for (const [k, v] of Object.entries(body as Record<string, unknown>)) {
    if (typeof v !== 'string' || v.length > maxField) return null;
    out[k] = v;
  }
  return out;
}
