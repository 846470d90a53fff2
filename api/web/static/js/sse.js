// Server-Sent Events from a fetch() response body (EventSource cannot POST or send headers).
// Yields {id, event, data} per dispatched event, following the WHATWG parsing rules.

export async function* readEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let id = null;
  let event = "";
  let data = [];
  const lines = function* (final) {
    for (;;) {
      const match = /\r\n|\r|\n/.exec(buffer);
      if (!match) return;
      // a lone "\r" at the end may be the first half of "\r\n": wait for more text
      if (!final && match[0] === "\r" && match.index === buffer.length - 1) return;
      const line = buffer.slice(0, match.index);
      buffer = buffer.slice(match.index + match[0].length);
      yield line;
    }
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (value) buffer += value;
    for (const line of lines(done)) {
      if (line === "") {
        if (data.length) yield { id, event: event || "message", data: data.join("\n") };
        event = "";
        data = [];
        id = null;
        continue;
      }
      if (line.startsWith(":")) continue; // a comment (keep-alive ping)
      const colon = line.indexOf(":");
      const name = colon < 0 ? line : line.slice(0, colon);
      let text = colon < 0 ? "" : line.slice(colon + 1);
      if (text.startsWith(" ")) text = text.slice(1);
      if (name === "data") data.push(text);
      else if (name === "event") event = text;
      else if (name === "id" && !text.includes("\0")) id = text;
    }
    if (done) return;
  }
}
