/** The relay's replay buffer for late viewers: the newest messages, bounded in count and in bytes. */
export class KeptMessages {
  private readonly messages: Buffer[] = [];
  private bytes = 0;

  constructor(
    private readonly maxCount: number,
    private readonly maxBytes: number,
  ) {}

  add(message: Buffer): void {
    this.messages.push(message);
    this.bytes += message.length;
    while (this.messages.length > this.maxCount || this.bytes > this.maxBytes) this.bytes -= this.messages.shift()!.length;
  }

  list(): readonly Buffer[] {
    return this.messages;
  }

  get totalBytes(): number {
    return this.bytes;
  }
}
