// A server-sent events parser (the WHATWG "event stream interpretation"), for reading
// GET /api/v1/admin/stream with fetch(): EventSource cannot send an Authorization header, and the token must
// never travel in a URL. Fed decoded text in arbitrary chunks; returns the events each chunk completes.

export interface SseEvent {
  event: string;
  data: string;
  id: string | null;
  retry: number | null;
}

export class SseParser {
  private buffer = "";
  private data: string[] = [];
  private eventType = "";
  private lastId: string | null = null;
  private retry: number | null = null;
  private sawField = false;
  /** The previous chunk ended in \r: a \n opening this one belongs to that line ending. */
  private skipLineFeed = false;

  /** Parse one chunk; a line split across chunks waits for the rest. */
  feed(chunk: string): SseEvent[] {
    if (this.skipLineFeed && chunk.startsWith("\n")) chunk = chunk.slice(1);
    this.skipLineFeed = false;
    this.buffer += chunk;
    const events: SseEvent[] = [];
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.buffer);
      if (match === null) break;
      if (match[0] === "\r" && match.index === this.buffer.length - 1) this.skipLineFeed = true;
      const line = this.buffer.slice(0, match.index);
      this.buffer = this.buffer.slice(match.index + match[0].length);
      const event = this.line(line);
      if (event !== null) events.push(event);
    }
    return events;
  }

  private line(line: string): SseEvent | null {
    if (line === "") return this.dispatch();
    if (line.startsWith(":")) return null; // a comment (keep-alive)
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    this.sawField = true;
    if (field === "data") this.data.push(value);
    else if (field === "event") this.eventType = value;
    else if (field === "id" && !value.includes("\0")) this.lastId = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.retry = Number(value);
    return null;
  }

  private dispatch(): SseEvent | null {
    const hadData = this.data.length > 0;
    const event: SseEvent = {
      event: this.eventType || "message",
      data: this.data.join("\n"),
      id: this.lastId,
      retry: this.retry,
    };
    this.data = [];
    this.eventType = "";
    const sawField = this.sawField;
    this.sawField = false;
    return hadData && sawField ? event : null;
  }
}

/** Read a byte stream to its end, calling `onEvent` for each complete event. */
export async function readEvents(
  body: ReadableStream<Uint8Array>,
  onEvent: (event: SseEvent) => void,
  signal?: AbortSignal,
): Promise<void> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const parser = new SseParser();
  const cancel = () => void reader.cancel().catch(() => undefined);
  signal?.addEventListener("abort", cancel, { once: true });
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      for (const event of parser.feed(decoder.decode(value, { stream: true }))) onEvent(event);
    }
    for (const event of parser.feed(decoder.decode())) onEvent(event);
  } finally {
    signal?.removeEventListener("abort", cancel);
    reader.releaseLock();
  }
}
