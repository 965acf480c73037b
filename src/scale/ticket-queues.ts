/**
 * The bot side's BullMQ handles: one queue per model to add tickets to (one per submitted job), and one event
 * listener per model that hands the workers' ticket events (started, progress, outcome) to the bot's queue.
 */
import { Queue, QueueEvents } from 'bullmq';
import type { Logger } from '../log.js';
import { bullConnection, commandConnection, withinMs, type Keys, type RedisTarget } from './redis.js';
import { isTicketEvent, type TicketEvent } from './ticket-events.js';

export class TicketQueues {
  private readonly queues = new Map<string, Queue>();
  private readonly listeners = new Map<string, QueueEvents>();
  private closed = false;

  constructor(
    private readonly redis: RedisTarget,
    private readonly keys: Keys,
    /** This bot process's name, for the connections' names. */
    private readonly instance: string,
    private readonly onEvent: (event: TicketEvent) => void,
    private readonly logger: Logger,
  ) {}

  /** One ticket for `model`: a turn for a worker to run that model's next fair run. */
  async add(model: string): Promise<void> {
    const queue = this.queue(this.keys.ticketQueue(model));
    await withinMs(queue.add('ticket', { model }, { removeOnComplete: { count: 100 }, removeOnFail: { count: 1000 } }), 5000, 'a ticket');
  }

  /** BullMQ's state of a taken run's ticket (`<queue name>:<ticket id>`, as the worker records it). */
  async state(runId: string): Promise<string> {
    const split = runId.lastIndexOf(':');
    return this.queue(runId.slice(0, split)).getJobState(runId.slice(split + 1));
  }

  /** Follow the events of `model`'s tickets (once per model). */
  listen(model: string): void {
    if (this.listeners.has(model) || this.closed) return;
    const events = new QueueEvents(this.keys.ticketQueue(model), {
      connection: bullConnection(this.redis, `imagine-bot-${this.instance}-events`),
      prefix: this.keys.prefix,
    });
    events.on('error', (error) => this.logger.debug('ticket events error', { error }));
    events.on('progress', ({ data }) => {
      if (isTicketEvent(data)) this.onEvent(data);
    });
    this.listeners.set(model, events);
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.listeners.values()].map((listener) => listener.close().catch(() => undefined)));
    await Promise.all([...this.queues.values()].map((queue) => queue.close().catch(() => undefined)));
  }

  private queue(name: string): Queue {
    let queue = this.queues.get(name);
    if (queue === undefined) {
      queue = new Queue(name, {
        // Fails fast while Redis is away (the submit is refused), unlike the workers' blocking connections.
        connection: commandConnection(this.redis, `imagine-bot-${this.instance}-tickets`),
        prefix: this.keys.prefix,
        // Progress events carry previews: keep the event stream short.
        streams: { events: { maxLen: 1000 } },
      });
      queue.on('error', (error) => this.logger.debug('ticket queue error', { error }));
      this.queues.set(name, queue);
    }
    return queue;
  }
}
