/** The configuration: load (YAML -> issues with file:line:col), compile, durations, path patterns. */
export type * from './types.js';
export {
  loadConfigText,
  loadConfigFile,
  loadConfigOrThrow,
  formatIssues,
  ConfigError,
  type LoadResult,
  type LoadOptions,
} from './load.js';
export { parseListen, normaliseHost, unsafeUrlText, didYouMean } from './compile.js';
export { parseDuration, formatDuration } from './duration.js';
export { compilePathPattern, type PathPatternResult } from './paths.js';
