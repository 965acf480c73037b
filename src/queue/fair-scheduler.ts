/**
 * Which waiting job starts next: round-robin across guilds, and within a guild round-robin across members, so
 * ten prompts from one member never make another wait behind all ten.
 *
 * Each level is a two-list round robin: `current` holds keys still owed a turn this round, `next` those served
 * this round that still have work. A key that becomes active (its first waiting job) joins `current` unless it
 * was already served this round, so a newcomer waits at most one round instead of behind a whole ring, and a
 * member cannot jump ahead by letting their list run empty and submitting again.
 */
export interface SchedulableJob {
  id: string;
  guildId: string;
  userId: string;
}

class RoundRobin {
  current: string[] = [];
  next: string[] = [];
  served = new Set<string>();

  activate(key: string): void {
    (this.served.has(key) ? this.next : this.current).push(key);
  }

  /** The key whose turn it is; it counts as served this round. */
  take(): string | undefined {
    if (this.current.length === 0) {
      if (this.next.length === 0) return undefined;
      this.current = this.next;
      this.next = [];
      this.served.clear();
    }
    const key = this.current.shift()!;
    this.served.add(key);
    return key;
  }

  /** The key `take` would return, without taking it. */
  peek(): string | undefined {
    return this.current[0] ?? this.next[0];
  }

  /** After `take`: the key has more work, so it comes back next round. */
  requeue(key: string): void {
    this.next.push(key);
  }

  /**
   * The key got a turn out of order (its job rode along in another key's run): it counts as served this round,
   * as if `take` had reached it. A key already served this round keeps its place in the next one.
   */
  serve(key: string, hasMore: boolean): void {
    const index = this.current.indexOf(key);
    if (index !== -1) {
      this.current.splice(index, 1);
      this.served.add(key);
      if (hasMore) this.next.push(key);
      return;
    }
    if (!hasMore) this.remove(key);
  }

  /** The key has no more work (its last job was cancelled). */
  remove(key: string): void {
    for (const list of [this.current, this.next]) {
      const index = list.indexOf(key);
      if (index !== -1) list.splice(index, 1);
    }
  }

  clone(): RoundRobin {
    const copy = new RoundRobin();
    copy.current = [...this.current];
    copy.next = [...this.next];
    copy.served = new Set(this.served);
    return copy;
  }

  toJSON(): RoundRobinState {
    return { current: [...this.current], next: [...this.next], served: [...this.served] };
  }

  static fromJSON(state: RoundRobinState): RoundRobin {
    const copy = new RoundRobin();
    copy.current = [...state.current];
    copy.next = [...state.next];
    copy.served = new Set(state.served);
    return copy;
  }
}

interface RoundRobinState {
  current: string[];
  next: string[];
  served: string[];
}

/**
 * Everything a `FairScheduler` knows, as plain JSON: the scaled queue keeps it in Redis and every process that
 * changes it reads it, changes it with this same class, and writes it back in one transaction (src/scale/).
 */
export interface FairSchedulerState<T> {
  guilds: RoundRobinState;
  /** guild id → its members' round and their waiting jobs, in order. */
  lanes: [string, { members: RoundRobinState; jobs: [string, T[]][] }][];
  idleLanes: string[];
}

interface GuildLane<T> {
  members: RoundRobin;
  jobs: Map<string, T[]>;
  count: number;
}

export class FairScheduler<T extends SchedulableJob> {
  private guilds = new RoundRobin();
  private readonly lanes = new Map<string, GuildLane<T>>();
  private readonly byId = new Map<string, T>();
  /** Guilds with nothing waiting, oldest first. Their lanes are kept for a while because the lane remembers who
   * was served this round: a member who just ran and submits again must not jump ahead of the others. */
  private readonly idleLanes = new Set<string>();

  constructor(private readonly maxIdleLanes = 1000) {}

  /** Its whole state as JSON (jobs included), for `FairScheduler.fromJSON`. */
  toJSON(): FairSchedulerState<T> {
    return {
      guilds: this.guilds.toJSON(),
      lanes: [...this.lanes].map(([guildId, lane]) => [
        guildId,
        { members: lane.members.toJSON(), jobs: [...lane.jobs].map(([userId, list]) => [userId, [...list]] as [string, T[]]) },
      ]),
      idleLanes: [...this.idleLanes],
    };
  }

  /** The scheduler `toJSON` described: the same order, rounds and idle lanes. */
  static fromJSON<T extends SchedulableJob>(state: FairSchedulerState<T>, maxIdleLanes?: number): FairScheduler<T> {
    const scheduler = new FairScheduler<T>(maxIdleLanes);
    scheduler.guilds = RoundRobin.fromJSON(state.guilds);
    for (const [guildId, lane] of state.lanes) {
      const jobs = new Map<string, T[]>();
      let count = 0;
      for (const [userId, list] of lane.jobs) {
        jobs.set(userId, [...list]);
        count += list.length;
        for (const job of list) scheduler.byId.set(job.id, job);
      }
      scheduler.lanes.set(guildId, { members: RoundRobin.fromJSON(lane.members), jobs, count });
    }
    for (const guildId of state.idleLanes) scheduler.idleLanes.add(guildId);
    return scheduler;
  }

  get size(): number {
    return this.byId.size;
  }

  has(jobId: string): boolean {
    return this.byId.has(jobId);
  }

  get(jobId: string): T | undefined {
    return this.byId.get(jobId);
  }

  /** Waiting jobs of one member in one guild. */
  countFor(guildId: string, userId: string): number {
    return this.lanes.get(guildId)?.jobs.get(userId)?.length ?? 0;
  }

  /** Waiting jobs of one member in one guild, in their order. */
  jobsFor(guildId: string, userId: string): readonly T[] {
    return this.lanes.get(guildId)?.jobs.get(userId) ?? [];
  }

  /** Every waiting job, in no particular order. */
  waiting(): IterableIterator<T> {
    return this.byId.values();
  }

  /** Distinct members (guild, user) with waiting jobs. */
  memberKeys(): string[] {
    const keys: string[] = [];
    for (const [guildId, lane] of this.lanes) for (const userId of lane.jobs.keys()) keys.push(`${guildId}:${userId}`);
    return keys;
  }

  add(job: T): void {
    if (this.byId.has(job.id)) throw new Error(`Job ${job.id} is already waiting`);
    let lane = this.lanes.get(job.guildId);
    if (lane === undefined) {
      lane = { members: new RoundRobin(), jobs: new Map(), count: 0 };
      this.lanes.set(job.guildId, lane);
    }
    if (lane.count === 0) {
      this.idleLanes.delete(job.guildId);
      this.guilds.activate(job.guildId);
    }
    let list = lane.jobs.get(job.userId);
    if (list === undefined) {
      list = [];
      lane.jobs.set(job.userId, list);
      lane.members.activate(job.userId);
    }
    list.push(job);
    lane.count++;
    this.byId.set(job.id, job);
  }

  /** The job `take` would return, left waiting (so a start that cannot be recorded loses it no place). */
  peek(): T | undefined {
    const guildId = this.guilds.peek();
    if (guildId === undefined) return undefined;
    const lane = this.lanes.get(guildId)!;
    return lane.jobs.get(lane.members.peek()!)![0];
  }

  /** The next job to start, removed from the waiting set. */
  take(): T | undefined {
    const guildId = this.guilds.take();
    if (guildId === undefined) return undefined;
    const lane = this.lanes.get(guildId)!;
    const userId = lane.members.take()!;
    const list = lane.jobs.get(userId)!;
    const job = list.shift()!;
    lane.count--;
    this.byId.delete(job.id);
    if (list.length > 0) lane.members.requeue(userId);
    else lane.jobs.delete(userId);
    if (lane.count > 0) this.guilds.requeue(guildId);
    else this.laneEmptied(guildId);
    return job;
  }

  /**
   * The next job and the waiting jobs that run with it, removed from the waiting set. `choose` gets every waiting
   * job in fair order and returns the indices to take, 0 (the job whose turn it is) first; the others count as
   * served this round, so riding along uses up a member's turn. Empty when nothing waits.
   */
  takeBatch(choose: (order: readonly T[]) => readonly number[]): T[] {
    if (this.byId.size === 0) return [];
    const order = this.order();
    const picked = choose(order);
    if (picked[0] !== 0) throw new Error(`Expected the batch to start with the head of the fair order (0), got \`${picked[0]}\``);
    const head = this.take()!;
    const batch = [head];
    for (const index of picked.slice(1)) {
      const job = order[index];
      if (job === undefined || job === head || !this.byId.has(job.id)) throw new Error(`Expected waiting job indices, got \`${index}\``);
      this.takeOutOfTurn(job);
      batch.push(job);
    }
    return batch;
  }

  /**
   * These waiting jobs, removed for a run that does not start with the head of the fair order (a job preferred
   * because its model is loaded, see model-affinity.ts): each counts as its member's turn this round, as a rider
   * of a batch does, and the head keeps its place.
   */
  takeOutOfOrder(jobs: readonly T[]): T[] {
    for (const job of jobs) {
      if (this.byId.get(job.id) !== job) throw new Error(`Expected waiting jobs, got \`${job.id}\``);
      this.takeOutOfTurn(job);
    }
    return [...jobs];
  }

  private takeOutOfTurn(job: T): void {
    const lane = this.lanes.get(job.guildId)!;
    const list = lane.jobs.get(job.userId)!;
    list.splice(list.indexOf(job), 1);
    lane.count--;
    this.byId.delete(job.id);
    if (list.length === 0) lane.jobs.delete(job.userId);
    lane.members.serve(job.userId, list.length > 0);
    this.guilds.serve(job.guildId, lane.count > 0);
    if (lane.count === 0) this.laneEmptied(job.guildId);
  }

  private laneEmptied(guildId: string): void {
    this.idleLanes.add(guildId);
    // Bounded memory: forget the round state of the guilds idle longest.
    for (const oldest of this.idleLanes) {
      if (this.idleLanes.size <= this.maxIdleLanes) break;
      this.idleLanes.delete(oldest);
      this.lanes.delete(oldest);
    }
  }

  /** Remove a waiting job (cancelled). Returns it, or undefined if it was not waiting. */
  remove(jobId: string): T | undefined {
    const job = this.byId.get(jobId);
    if (job === undefined) return undefined;
    const lane = this.lanes.get(job.guildId)!;
    const list = lane.jobs.get(job.userId)!;
    list.splice(list.indexOf(job), 1);
    lane.count--;
    this.byId.delete(jobId);
    if (list.length === 0) {
      lane.jobs.delete(job.userId);
      lane.members.remove(job.userId);
    }
    if (lane.count === 0) {
      this.guilds.remove(job.guildId);
      this.laneEmptied(job.guildId);
    }
    return job;
  }

  /** Every waiting job in the order `take` would return them if nothing else arrived. O(jobs + members). */
  order(): T[] {
    const guilds = this.guilds.clone();
    const lanes = new Map<string, { members: RoundRobin; jobs: Map<string, { list: T[]; next: number }>; count: number }>();
    for (const [guildId, lane] of this.lanes) {
      if (lane.count === 0) continue;
      const jobs = new Map<string, { list: T[]; next: number }>();
      for (const [userId, list] of lane.jobs) jobs.set(userId, { list, next: 0 });
      lanes.set(guildId, { members: lane.members.clone(), jobs, count: lane.count });
    }
    const order: T[] = [];
    for (;;) {
      const guildId = guilds.take();
      if (guildId === undefined) return order;
      const lane = lanes.get(guildId)!;
      const userId = lane.members.take()!;
      const cursor = lane.jobs.get(userId)!;
      order.push(cursor.list[cursor.next++]);
      lane.count--;
      if (cursor.next < cursor.list.length) lane.members.requeue(userId);
      if (lane.count > 0) guilds.requeue(guildId);
    }
  }
}
