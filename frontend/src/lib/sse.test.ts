import { describe, expect, it } from "vitest";
import { readEvents, SseParser, type SseEvent } from "./sse";

describe("SseParser", () => {
  it("parses the gateway's stream: a comment, then snapshot events", () => {
    const parser = new SseParser();
    const events = parser.feed(': snapshots follow\n\nevent: snapshot\ndata: {"a":1}\n\nevent: snapshot\ndata: {"a":2}\n\n');
    expect(events.map((e) => [e.event, e.data])).toEqual([
      ["snapshot", '{"a":1}'],
      ["snapshot", '{"a":2}'],
    ]);
  });

  it("joins events split anywhere across chunks, including inside a CRLF", () => {
    const text = 'event: snapshot\r\ndata: {"big":"' + "x".repeat(50) + '"}\r\n\r\n';
    for (let cut = 1; cut < text.length; cut += 7) {
      const parser = new SseParser();
      const events = [...parser.feed(text.slice(0, cut)), ...parser.feed(text.slice(cut))];
      expect(events).toHaveLength(1);
      expect(JSON.parse(events[0]!.data)).toEqual({ big: "x".repeat(50) });
    }
  });

  it("handles multi-line data, CR line endings, ids, retry and defaults", () => {
    const parser = new SseParser();
    const [event] = parser.feed("id: 7\rretry: 3000\rdata: one\rdata:two\r\r");
    expect(event).toEqual({ event: "message", data: "one\ntwo", id: "7", retry: 3000 });
  });

  it("dispatches nothing for blocks without data and resets the event type", () => {
    const parser = new SseParser();
    expect(parser.feed("event: snapshot\n\n")).toEqual([]);
    expect(parser.feed("data: x\n\n")[0]?.event).toBe("message");
  });

  it("keeps an unterminated event until its blank line arrives", () => {
    const parser = new SseParser();
    expect(parser.feed("data: partial")).toEqual([]);
    expect(parser.feed("\n")).toEqual([]);
    expect(parser.feed("\n")[0]?.data).toBe("partial");
  });
});

describe("readEvents", () => {
  it("decodes UTF-8 split across byte chunks", async () => {
    const bytes = new TextEncoder().encode("data: héllo ✓\n\n");
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        for (const byte of bytes) controller.enqueue(new Uint8Array([byte]));
        controller.close();
      },
    });
    const seen: SseEvent[] = [];
    await readEvents(stream, (event) => seen.push(event));
    expect(seen.map((e) => e.data)).toEqual(["héllo ✓"]);
  });
});
