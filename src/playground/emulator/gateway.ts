import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import {
  GatewayCloseCodes,
  GatewayDispatchEvents,
  GatewayIntentBits,
  GatewayOpcodes,
  type GatewayDispatchPayload,
  type GatewayHelloData,
  type GatewayReceivePayload,
  type GatewayRequestGuildMembersData,
  type GatewaySendPayload,
} from 'discord-api-types/v10';
import { WebSocketServer, type WebSocket } from 'ws';

/** A dispatch the emulator can send: `t` picks the payload type of `d`, so the compiler checks every event. */
export type DispatchInput = GatewayDispatchPayload extends infer P
  ? P extends GatewayDispatchPayload
    ? { t: P['t']; d: P['d'] }
    : never
  : never;

/** A dispatch as sent, with its sequence number. */
export interface SentDispatch {
  s: number;
  t: string;
  d: unknown;
}

/** Which intent an event needs (discord.com/developers/docs/events/gateway#list-of-intents); absent: always sent. */
const EVENT_INTENTS: Partial<Record<string, number>> = {
  [GatewayDispatchEvents.GuildCreate]: GatewayIntentBits.Guilds,
  [GatewayDispatchEvents.GuildUpdate]: GatewayIntentBits.Guilds,
  [GatewayDispatchEvents.GuildRoleCreate]: GatewayIntentBits.Guilds,
  [GatewayDispatchEvents.GuildRoleUpdate]: GatewayIntentBits.Guilds,
  [GatewayDispatchEvents.ChannelCreate]: GatewayIntentBits.Guilds,
  [GatewayDispatchEvents.ThreadCreate]: GatewayIntentBits.Guilds,
  [GatewayDispatchEvents.MessageCreate]: GatewayIntentBits.GuildMessages,
  [GatewayDispatchEvents.MessageUpdate]: GatewayIntentBits.GuildMessages,
  [GatewayDispatchEvents.MessageDelete]: GatewayIntentBits.GuildMessages,
  [GatewayDispatchEvents.MessageReactionAdd]: GatewayIntentBits.GuildMessageReactions,
  [GatewayDispatchEvents.MessageReactionRemove]: GatewayIntentBits.GuildMessageReactions,
};

/** GuildMembers, GuildPresences and MessageContent need a switch in the developer portal. */
const PRIVILEGED_INTENTS = GatewayIntentBits.GuildMembers | GatewayIntentBits.GuildPresences | GatewayIntentBits.MessageContent;

/** One gateway session: survives its socket so a RESUME can replay what was missed. */
export class GatewaySession {
  seq = 0;
  /** Every dispatch of this session, kept for replay on RESUME. */
  readonly sent: SentDispatch[] = [];
  socket: WebSocket | undefined;
  /** After op 7 is sent, dispatches wait for the resumed socket instead of going to the old one. */
  reconnecting = false;

  constructor(
    readonly id: string,
    readonly intents: number,
    /** IDENTIFY's `shard: [shard_id, num_shards]`; `[0, 1]` when the client sent none. */
    readonly shard: readonly [number, number] = [0, 1],
  ) {}

  get live(): boolean {
    return this.socket !== undefined && this.socket.readyState === this.socket.OPEN && !this.reconnecting;
  }
}

export interface GatewayOptions {
  token: string;
  /** Privileged intents switched on for the application in the developer portal; others are refused with 4014. */
  privilegedIntents: number;
  heartbeatIntervalMs: number;
  /** Called after IDENTIFY with the new session; sends READY and GUILD_CREATE through `session`. */
  onIdentify: (session: GatewaySession, gateway: Gateway) => void;
  /** Op 8: answers with GUILD_MEMBERS_CHUNK through `session`. */
  onRequestGuildMembers: (session: GatewaySession, data: GatewayRequestGuildMembersData, gateway: Gateway) => void;
  resumeUrl: () => string;
  newSessionId: () => string;
  /** `GET /gateway/bot`'s recommended `shards`; IDENTIFY may still ask for any count. Default 1. */
  shards?: number;
}

/**
 * The shard that receives a guild's events: `shard_id = (guild_id >> 22) % num_shards`
 * (https://discord.com/developers/docs/events/gateway#sharding).
 */
export function shardOfGuild(guildId: string, numShards: number): number {
  return Number((BigInt(guildId) >> 22n) % BigInt(numShards));
}

/** The guild an event belongs to: `guild_id`, or `id` for the GUILD_* events about the guild itself. */
function guildOf(event: DispatchInput): string | undefined {
  const d = event.d as { guild_id?: unknown; id?: unknown } | null;
  if (d && typeof d.guild_id === 'string') return d.guild_id;
  const aboutGuild: string[] = [GatewayDispatchEvents.GuildCreate, GatewayDispatchEvents.GuildUpdate, GatewayDispatchEvents.GuildDelete];
  if (d && aboutGuild.includes(event.t) && typeof d.id === 'string') return d.id;
  return undefined;
}

/** Counters a test can assert on. */
export interface GatewayStats {
  connections: number;
  /** Connections made to READY's `resume_gateway_url` rather than the discovered URL. */
  resumeUrlConnections: number;
  identifies: number;
  resumes: number;
  heartbeats: number;
  /** Events sent again on RESUME. */
  replayed: number;
}

/**
 * The gateway over WebSocket, JSON text frames, no compression (discord.js only asks for
 * zlib-stream when zlib-sync is installed). Speaks HELLO, IDENTIFY, READY, heartbeats,
 * RESUME with replay, op 7 RECONNECT and op 9 INVALID_SESSION.
 */
export class Gateway {
  readonly stats: GatewayStats = { connections: 0, resumeUrlConnections: 0, identifies: 0, resumes: 0, heartbeats: 0, replayed: 0 };
  /** The latest identified (or resumed) session; with one shard, dispatches go to it. */
  current: GatewaySession | undefined;
  /** `[shard_id, num_shards]` of every IDENTIFY, in order. */
  readonly identifiedShards: Array<readonly [number, number]> = [];
  /** The latest session of each shard id. */
  readonly #byShard = new Map<number, GatewaySession>();
  readonly #sessions = new Map<string, GatewaySession>();
  readonly #wss = new WebSocketServer({ noServer: true });
  readonly #sockets = new Set<WebSocket>();
  #listeners = new Set<() => void>();
  #timers = new Set<NodeJS.Timeout>();
  #acksToDrop = 0;

  constructor(private readonly options: GatewayOptions) {
    this.#wss.on('connection', (socket, request: IncomingMessage) => {
      if (request.url?.startsWith(new URL(this.options.resumeUrl()).pathname)) this.stats.resumeUrlConnections++;
      const query = new URL(request.url ?? '/', 'ws://127.0.0.1').searchParams;
      // discord.js asks for `?v=10&encoding=json`; Discord refuses other versions with 4012.
      if (query.get('v') !== '10' || (query.get('encoding') ?? 'json') !== 'json') {
        this.#sockets.add(socket);
        socket.on('close', () => this.#sockets.delete(socket));
        socket.close(GatewayCloseCodes.InvalidAPIVersion, 'Invalid API version');
        return;
      }
      this.#onConnection(socket);
    });
  }

  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.#wss.handleUpgrade(request, socket, head, (ws) => this.#wss.emit('connection', ws, request));
  }

  /** `GET /gateway/bot`'s `shards`. */
  get recommendedShards(): number {
    return this.options.shards ?? 1;
  }

  /**
   * The session an event goes to: a guild's events to the shard that holds the guild, anything else (DMs) to
   * shard 0, as Discord does; with one shard, the current session. Undefined before that shard identified.
   */
  sessionFor(event: DispatchInput): GatewaySession | undefined {
    const numShards = this.current?.shard[1] ?? 1;
    if (numShards === 1) return this.current;
    const guildId = guildOf(event);
    return this.#byShard.get(guildId === undefined ? 0 : shardOfGuild(guildId, numShards));
  }

  /** Every shard of the latest session's count has a live session (one shard: the current session is live). */
  get allShardsLive(): boolean {
    const numShards = this.current?.shard[1];
    if (numShards === undefined) return false;
    for (let id = 0; id < numShards; id++) {
      const session = this.#byShard.get(id);
      if (!session?.live || session.shard[1] !== numShards) return false;
    }
    return true;
  }

  /** Sends an event to the session of its shard (or keeps it for a RESUME when the socket is down). */
  dispatch(event: DispatchInput): SentDispatch | undefined {
    if (!this.current) throw new Error('No gateway session yet: log the client in and wait for READY first');
    const session = this.sessionFor(event);
    if (!session) throw new Error(`No gateway session for the shard of this \`${event.t}\` yet: wait for every shard's READY first`);
    return this.dispatchTo(session, event);
  }

  /** Like `dispatch`, but a no-op while no session holds the event's shard (before login). */
  dispatchIfConnected(event: DispatchInput): void {
    const session = this.sessionFor(event);
    if (session) this.dispatchTo(session, event);
  }

  dispatchTo(session: GatewaySession, event: DispatchInput): SentDispatch | undefined {
    const intent = EVENT_INTENTS[event.t];
    // Discord never sends an event the session has no intent for; neither do we.
    if (intent !== undefined && (session.intents & intent) === 0) return undefined;
    const sent: SentDispatch = { s: ++session.seq, t: event.t, d: event.d };
    session.sent.push(sent);
    if (session.live) this.#send(session.socket!, { op: GatewayOpcodes.Dispatch, t: event.t, s: sent.s, d: event.d });
    this.#notify();
    return sent;
  }

  /** Op 7: the client closes with 4200 and resumes; events in between are replayed. */
  reconnect(): void {
    const session = this.#requireLive();
    session.reconnecting = true;
    this.#send(session.socket!, { op: GatewayOpcodes.Reconnect, d: null });
  }

  /** Closes the socket as a network fault or Discord restart would; discord.js resumes for codes other than 1000 and the fatal ones. */
  disconnect(code = 4000): void {
    const session = this.#requireLive();
    session.reconnecting = true;
    session.socket!.close(code, 'Emulator disconnect');
  }

  /** Op 9; `resumable: false` makes the client identify again and lose the session. */
  invalidateSession(resumable: boolean): void {
    const session = this.#requireLive();
    if (!resumable) this.#sessions.delete(session.id);
    this.#send(session.socket!, { op: GatewayOpcodes.InvalidSession, d: resumable });
  }

  /**
   * Leaves the next `count` heartbeats unanswered: discord.js then sees a zombie connection at its
   * next beat, closes and resumes.
   */
  dropHeartbeatAcks(count: number): void {
    this.#acksToDrop += count;
  }

  /** Resolves when `predicate` holds, re-checked after every gateway change. */
  waitUntil(predicate: () => boolean, timeoutMs: number, description: string): Promise<void> {
    if (predicate()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const listener = () => {
        if (!predicate()) return;
        this.#listeners.delete(listener);
        clearTimeout(timer);
        this.#timers.delete(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.#listeners.delete(listener);
        this.#timers.delete(timer);
        reject(new Error(`Timed out after ${timeoutMs} ms waiting for ${description}`));
      }, timeoutMs);
      this.#timers.add(timer);
      this.#listeners.add(listener);
    });
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.terminate();
    this.#sockets.clear();
    this.#listeners.clear();
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    await new Promise<void>((resolve) => this.#wss.close(() => resolve()));
  }

  #requireLive(): GatewaySession {
    const session = this.current;
    if (!session?.live) throw new Error('No connected gateway session to act on');
    return session;
  }

  #notify(): void {
    for (const listener of [...this.#listeners]) listener();
  }

  #send(socket: WebSocket, payload: GatewayReceivePayload | { op: GatewayOpcodes; d: unknown; t?: string; s?: number }): void {
    if (socket.readyState === socket.OPEN) socket.send(JSON.stringify({ t: null, s: null, ...payload }));
  }

  #onConnection(socket: WebSocket): void {
    this.stats.connections++;
    this.#sockets.add(socket);
    let session: GatewaySession | undefined;
    const hello: GatewayHelloData = { heartbeat_interval: this.options.heartbeatIntervalMs };
    this.#send(socket, { op: GatewayOpcodes.Hello, d: hello });

    socket.on('message', (data, isBinary) => {
      let payload: GatewaySendPayload;
      try {
        payload = JSON.parse(isBinary ? Buffer.from(data as Buffer).toString('utf8') : data.toString());
      } catch {
        socket.close(GatewayCloseCodes.DecodeError, 'Error while decoding payload.');
        return;
      }
      switch (payload.op) {
        case GatewayOpcodes.Heartbeat:
          this.stats.heartbeats++;
          this.#notify();
          if (this.#acksToDrop > 0) {
            this.#acksToDrop--;
            break;
          }
          this.#send(socket, { op: GatewayOpcodes.HeartbeatAck, d: undefined });
          break;
        case GatewayOpcodes.Identify: {
          if (session) return socket.close(GatewayCloseCodes.AlreadyAuthenticated, 'Already authenticated.');
          if (payload.d.token !== this.options.token) return socket.close(GatewayCloseCodes.AuthenticationFailed, 'Authentication failed.');
          if (Number(payload.d.intents) & PRIVILEGED_INTENTS & ~this.options.privilegedIntents) {
            return socket.close(GatewayCloseCodes.DisallowedIntents, 'Disallowed intent(s).');
          }
          const shard = payload.d.shard ?? [0, 1];
          const [shardId, numShards] = shard;
          if (!Number.isInteger(numShards) || numShards < 1 || !Number.isInteger(shardId) || shardId < 0 || shardId >= numShards) {
            return socket.close(GatewayCloseCodes.InvalidShard, 'Invalid shard.');
          }
          this.stats.identifies++;
          this.identifiedShards.push([shardId, numShards]);
          session = new GatewaySession(this.options.newSessionId(), Number(payload.d.intents), [shardId, numShards]);
          session.socket = socket;
          this.#sessions.set(session.id, session);
          this.#byShard.set(shardId, session);
          this.current = session;
          this.options.onIdentify(session, this);
          this.#notify();
          break;
        }
        case GatewayOpcodes.Resume: {
          if (session) return socket.close(GatewayCloseCodes.AlreadyAuthenticated, 'Already authenticated.');
          const resumed = this.#sessions.get(payload.d.session_id);
          if (!resumed || payload.d.token !== this.options.token) {
            this.#send(socket, { op: GatewayOpcodes.InvalidSession, d: false });
            return;
          }
          if (payload.d.seq > resumed.seq) return socket.close(GatewayCloseCodes.InvalidSeq, 'Invalid seq.');
          this.stats.resumes++;
          session = resumed;
          const old = resumed.socket;
          resumed.socket = socket;
          resumed.reconnecting = false;
          if (old && old !== socket && old.readyState === old.OPEN) old.close(4000, 'Session resumed elsewhere');
          for (const missed of resumed.sent.filter((e) => e.s > payload.d.seq)) {
            this.stats.replayed++;
            this.#send(socket, { op: GatewayOpcodes.Dispatch, t: missed.t, s: missed.s, d: missed.d });
          }
          this.#send(socket, { op: GatewayOpcodes.Dispatch, t: GatewayDispatchEvents.Resumed, s: ++resumed.seq, d: {} });
          resumed.sent.push({ s: resumed.seq, t: GatewayDispatchEvents.Resumed, d: {} });
          this.#byShard.set(resumed.shard[0], resumed);
          this.current = resumed;
          this.#notify();
          break;
        }
        case GatewayOpcodes.RequestGuildMembers:
          if (!session) return socket.close(GatewayCloseCodes.NotAuthenticated, 'Not authenticated.');
          this.options.onRequestGuildMembers(session, payload.d, this);
          break;
        case GatewayOpcodes.PresenceUpdate:
        case GatewayOpcodes.VoiceStateUpdate:
          if (!session) socket.close(GatewayCloseCodes.NotAuthenticated, 'Not authenticated.');
          break;
        default:
          socket.close(GatewayCloseCodes.UnknownOpcode, 'Unknown opcode.');
      }
    });

    socket.on('close', () => {
      this.#sockets.delete(socket);
      if (session && session.socket === socket) session.socket = undefined;
      this.#notify();
    });
    socket.on('error', () => {
      // A client that vanishes mid-frame: the close handler does the bookkeeping.
    });
  }
}
