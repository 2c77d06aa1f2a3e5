/** Programmatic API: `startProxy(options)` resolves to the running proxy (its socket path and `close()`). */
export { startProxy, type RunningProxy } from './server.js';
export { resolveConfig, InvalidOptionError, PROXY_DEFAULTS, type ProxyOptions, type ProxyConfig } from './config.js';
export { ProxyStartError, defaultListenPath } from './listenSocket.js';
export { createLogger, type LogLevel, type LoggerOptions } from './log.js';
export type { SessionInfo, SessionSummary, SessionTimeouts } from './session/session.js';
export { sessionMachine, type SessionEvent, type SessionContext, type SessionFailure } from '../machines/session.js';
export { streamToInspector, type InspectorStream } from './inspect/stately.js';
export { startInspectorRelay, type InspectorRelay } from './inspect/relay.js';
export { sanitizeContext, sanitizeEvent } from './inspect/sanitize.js';
export { LiveActors } from './liveView/liveActors.js';
export { startLiveView, type LiveView, type LiveViewOptions } from './liveView/server.js';
