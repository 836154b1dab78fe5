/**
 * What keeps the process alive while a netstack socket is open and ref'd. A netstack socket is
 * not a libuv handle (its packets move through the stack's link), so Node would otherwise exit
 * with a listening server open. One ref'd timer per process stands for every ref'd socket, like
 * a handle; it is released when the last ref'd socket closes or is unref'd.
 */
let holders = 0;
let timer: NodeJS.Timeout | null = null;

/** One ref'd socket's claim on the process. Idempotent per instance. */
export class ProcessHold {
  private held = false;

  /** Hold the process (Node's ref()). */
  ref(): void {
    if (this.held) return;
    this.held = true;
    holders++;
    // About 24.8 days, the longest a timer can wait: it exists only to be a ref'd handle.
    timer ??= setInterval(() => undefined, 0x7fffffff);
  }

  /** Let go (Node's unref(), and close). */
  unref(): void {
    if (!this.held) return;
    this.held = false;
    holders--;
    if (holders === 0 && timer !== null) {
      clearInterval(timer);
      timer = null;
    }
  }

  get isHeld(): boolean {
    return this.held;
  }
}

/** How many netstack sockets hold the process now (tests). */
export function processHolders(): number {
  return holders;
}
