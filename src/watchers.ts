/**
 * What `--ui` and `--inspect` start, for the proxy and for `forward` alike: the live view, the inspector stream and
 * (with no URL) the relay it streams to. Only the modes asked for are created: with neither, no actor is inspected.
 * The inspection observer exists from the start (it is part of the config); the stream behind it exists once
 * `startInspector()` has run, still before any actor does; the live view starts once there is something to show.
 */
import type { AnyStateMachine, InspectionEvent } from 'xstate';
import { startInspectorRelay, type InspectorRelay } from './inspect/relay.js';
import { streamToInspector, type InspectorStream } from './inspect/stately.js';
import { ProxyStartError } from './listenSocket.js';
import { LiveActors } from './liveView/liveActors.js';
import { startLiveView, type LiveView, type LiveViewSource } from './liveView/server.js';
import { combineObservers } from './machineTools/trace.js';

export interface WatchOptions {
  /** undefined: no inspector; null: start our relay and stream to it; else the URL to stream to. */
  inspectUrl: string | null | undefined;
  inspectPort: number;
  /** undefined: no live view. */
  uiPort: number | undefined;
}

export class Watchers {
  readonly inspect: ((event: InspectionEvent) => void) | undefined;
  private readonly liveActors: LiveActors | undefined;
  private relay: InspectorRelay | undefined;
  private inspector: InspectorStream | undefined;
  private liveView: LiveView | undefined;

  constructor(private readonly options: WatchOptions) {
    this.liveActors = options.uiPort !== undefined ? new LiveActors() : undefined;
    this.inspect = combineObservers([options.inspectUrl !== undefined ? (event) => this.inspector?.inspect(event) : undefined, this.liveActors?.inspect]);
  }

  /** Starts the relay (if asked for with no URL) and the stream; call before any actor starts. */
  async startInspector(): Promise<void> {
    const { inspectUrl, inspectPort } = this.options;
    if (inspectUrl === undefined) return;
    if (inspectUrl === null) {
      this.relay = await startInspectorRelay(inspectPort).catch((err: unknown) => {
        const message = isPortInUse(err) ? 'the port is in use (choose another one, e.g. --inspect-port 0)' : failureMessage(err);
        throw new ProxyStartError(`cannot start the inspector relay on 127.0.0.1:${inspectPort}: ${message}`);
      });
    }
    this.inspector = streamToInspector(inspectUrl ?? this.relay!.streamUrl);
  }

  /** Serves the live view of `source`, drawing `machines` (the session machine large, the others beside it). */
  async startLiveView(source: LiveViewSource, machines: AnyStateMachine[]): Promise<void> {
    const { uiPort } = this.options;
    if (!this.liveActors || uiPort === undefined) return;
    try {
      this.liveView = await startLiveView({ actors: this.liveActors, proxy: source, machines, port: uiPort });
    } catch (err) {
      throw new ProxyStartError(`cannot serve the live view on 127.0.0.1:${uiPort}: ${failureMessage(err)}`);
    }
  }

  /** What to tell the person who started us: where to look. */
  banner(): string {
    const { inspectUrl } = this.options;
    return (
      (this.liveView ? `Live view: ${this.liveView.url}\n` : '') +
      (this.relay ? `Inspector: open ${this.relay.pageUrl} in a browser with internet access (the inspector UI is hosted by Stately)\n` : '') +
      (inspectUrl ? `Inspector: streaming to ${inspectUrl}\n` : '')
    );
  }

  async close(): Promise<void> {
    this.inspector?.stop();
    await Promise.all([this.relay?.close(), this.liveView?.close()]);
  }
}

export function failureMessage(err: unknown): string {
  if (err instanceof ProxyStartError) return err.message;
  if (isPortInUse(err)) return 'the port is in use (choose another one)';
  return (err as Error).stack ?? String(err);
}

function isPortInUse(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'EADDRINUSE';
}
