/** Read-only containers for the compiled config (Object.freeze does not stop Map#set or URL setters) and deepFreeze. */
import { CidrSet } from '../net/cidr.js';

export class FrozenMap<K, V> extends Map<K, V> {
  constructor(entries: Iterable<readonly [K, V]>) {
    super();
    for (const [k, v] of entries) Map.prototype.set.call(this, k, v);
    Object.freeze(this);
  }
  override set(key: K): this {
    throw new TypeError(`the configuration is read-only (set ${String(key)})`);
  }
  override delete(key: K): boolean {
    throw new TypeError(`the configuration is read-only (delete ${String(key)})`);
  }
  override clear(): void {
    throw new TypeError('the configuration is read-only (clear)');
  }
}

export class FrozenSet<T> extends Set<T> {
  constructor(values: Iterable<T>) {
    super();
    for (const v of values) Set.prototype.add.call(this, v);
    Object.freeze(this);
  }
  override add(value: T): this {
    throw new TypeError(`the configuration is read-only (add ${String(value)})`);
  }
  override delete(value: T): boolean {
    throw new TypeError(`the configuration is read-only (delete ${String(value)})`);
  }
  override clear(): void {
    throw new TypeError('the configuration is read-only (clear)');
  }
}

/** A URL whose setters throw, so no request handler can rewrite the configured upstream. */
export class FrozenURL extends URL {
  constructor(href: string) {
    super(href);
    Object.freeze(this);
  }
}
for (const name of ['href', 'protocol', 'username', 'password', 'host', 'hostname', 'port', 'pathname', 'search', 'hash']) {
  const d = Object.getOwnPropertyDescriptor(URL.prototype, name);
  if (!d?.get) continue;
  Object.defineProperty(FrozenURL.prototype, name, {
    get: d.get,
    set() {
      throw new TypeError(`the configuration is read-only (URL ${name})`);
    },
    enumerable: true,
    configurable: false,
  });
}
Object.defineProperty(FrozenURL.prototype, 'searchParams', {
  get(this: URL) {
    return new URLSearchParams(this.search);
  },
  enumerable: true,
  configurable: false,
});

export function deepFreeze<T>(value: T, seen = new Set<unknown>()): T {
  if (value === null || typeof value !== 'object' || seen.has(value)) return value;
  seen.add(value);
  if (value instanceof CidrSet || value instanceof URL || value instanceof RegExp) return value;
  if (value instanceof Map) {
    for (const v of value.values()) deepFreeze(v, seen);
  } else if (value instanceof Set) {
    for (const v of value) deepFreeze(v, seen);
  } else {
    for (const v of Object.values(value)) deepFreeze(v, seen);
  }
  return Object.freeze(value);
}
